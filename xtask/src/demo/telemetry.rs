//! Demo section for the telemetry filter (placeholder until the telemetry issue lands its section).

use super::DemoEnv;

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("telemetry");
    anyhow::bail!("the telemetry demo section is not written yet")
}
