// A real-SDK child: AWS SDK for JavaScript v3 resolves credentials on its own (default chain)
// and prints the identity it runs as, `arn=<Arn>`. Nothing in its lookup is changed.
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");

(async () => {
  const client = new STSClient({});
  const out = await client.send(new GetCallerIdentityCommand({}));
  console.log(`arn=${out.Arn}`);
})().catch((e) => {
  console.error(`error: ${e.name}: ${e.message}`);
  process.exit(1);
});
