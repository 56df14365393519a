// The action's main step: run.sh start, with the runner's worker (this process's parent) as the
// process credwrap watches, so that it stops with the job even if the post step never runs.
const { spawnSync } = require("child_process");
const path = require("path");

const run = spawnSync("bash", [path.join(__dirname, "run.sh"), "start"], {
  stdio: "inherit",
  env: { ...process.env, CREDWRAP_ACTION_WATCH: String(process.ppid) },
});
process.exit(run.status === null ? 1 : run.status);
