"""The content plan: reading YAML and CSV plans, validating them, importing them as posts."""

from scheduler.plan.items import PlanItem, RawItem
from scheduler.plan.read import read_plan_files

__all__ = ["PlanItem", "RawItem", "read_plan_files"]
