//! Demo section for the canary filter (placeholder until the canary issue lands its section).

use super::DemoEnv;

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("canary");
    anyhow::bail!("the canary demo section is not written yet")
}
