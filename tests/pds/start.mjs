// The reference Bluesky servers for the integration tests (tests/test_bluesky_pds.py).
//
// Starts @atproto/dev-env's TestNetworkNoAppView (an in-memory PLC directory and the PDS on
// SQLite, no AppView) or, with PDS_APPVIEW=1, its TestNetwork: the same plus the AppView
// (@atproto/bsky), bsync and Ozone on the PostgreSQL database named by DB_POSTGRES_URL, the
// PDS answering app.bsky.* reads through that AppView. Creates the test accounts, prints one
// JSON line (the PDS URL, the AppView URL or null, and the accounts), then reads commands from
// stdin, one a line: "process" waits until the AppView has indexed everything the PDS has
// written so far and answers {"processed": true}. Runs until stdin closes or SIGTERM.
// PDS_RATE_LIMITS=1 turns the PDS's rate limits on.
import { createInterface } from 'node:readline'
import { TestNetwork, TestNetworkNoAppView } from '@atproto/dev-env'

const pds = { rateLimitsEnabled: process.env.PDS_RATE_LIMITS === '1' }
const withAppView = process.env.PDS_APPVIEW === '1'
const network = withAppView
  ? await TestNetwork.create({ pds, dbPostgresSchema: process.env.DB_POSTGRES_SCHEMA || 'smm' })
  : await TestNetworkNoAppView.create({ pds })
const agent = network.pds.getAgent()
const accounts = {}
for (const name of ['alice', 'bob']) {
  const handle = `${name}.test`
  const password = `${name}-pass-${Math.random().toString(36).slice(2)}`
  const res = await agent.com.atproto.server.createAccount({
    handle,
    email: `${name}@example.test`,
    password,
  })
  accounts[name] = { handle, did: res.data.did, password }
}
if (withAppView) await network.processAll()
console.log(
  JSON.stringify({
    pds: network.pds.url,
    appview: withAppView ? network.bsky.url : null,
    accounts,
  }),
)

let closing = false
const close = async () => {
  if (closing) return
  closing = true
  await network.close()
  process.exit(0)
}
process.on('SIGTERM', close)
const commands = createInterface({ input: process.stdin })
commands.on('line', async (line) => {
  if (line.trim() === 'process') {
    await network.processAll()
    console.log(JSON.stringify({ processed: true }))
  }
})
commands.on('close', close)
