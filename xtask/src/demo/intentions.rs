//! Demo section for the intentions filter (placeholder until the intentions issue lands its section).

use super::DemoEnv;

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("intentions");
    anyhow::bail!("the intentions demo section is not written yet")
}
