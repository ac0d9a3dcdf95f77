// Reads one variable from an OPC UA server with node-opcua and prints JSON on stdout.
// usage: node read_value.js <endpoint> <nodeId> [<nodeId> ...]
"use strict";
const { OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds } = require("node-opcua");

async function main() {
  const [endpoint, ...nodeIds] = process.argv.slice(2);
  const client = OPCUAClient.create({
    applicationName: "milur-bridge-interop-test",
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpoint);
  const session = await client.createSession();
  const results = [];
  for (const nodeId of nodeIds) {
    const dv = await session.read({ nodeId, attributeId: AttributeIds.Value });
    results.push({
      nodeId,
      value: dv.value.value,
      dataType: dv.value.dataType,
      status: dv.statusCode.value,
      statusName: dv.statusCode.name,
      sourceTimestamp: dv.sourceTimestamp ? dv.sourceTimestamp.toISOString() : null,
    });
  }
  await session.close();
  await client.disconnect();
  process.stdout.write("RESULT " + JSON.stringify(results) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
