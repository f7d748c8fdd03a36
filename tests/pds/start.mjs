// The reference Bluesky PDS for the integration tests (tests/test_bluesky_pds.py).
//
// Starts @atproto/dev-env's TestNetworkNoAppView (an in-memory PLC directory and the PDS on
// SQLite, no AppView), creates the test accounts, prints one JSON line (the PDS URL and the
// accounts), then runs until stdin closes or SIGTERM. PDS_RATE_LIMITS=1 turns the PDS's rate
// limits on.
import { TestNetworkNoAppView } from '@atproto/dev-env'

const network = await TestNetworkNoAppView.create({
  pds: { rateLimitsEnabled: process.env.PDS_RATE_LIMITS === '1' },
})
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
console.log(JSON.stringify({ pds: network.pds.url, accounts }))

let closing = false
const close = async () => {
  if (closing) return
  closing = true
  await network.close()
  process.exit(0)
}
process.on('SIGTERM', close)
process.stdin.on('end', close)
process.stdin.resume()
