// The action's post step, at the end of the job: run.sh stop.
const { spawnSync } = require("child_process");
const path = require("path");

const run = spawnSync("bash", [path.join(__dirname, "run.sh"), "stop"], { stdio: "inherit" });
process.exit(run.status === null ? 1 : run.status);
