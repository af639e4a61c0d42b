//! Demo section for the ratelimit filter (placeholder until the ratelimit issue lands its section).

use super::DemoEnv;

pub fn run(env: &DemoEnv) -> anyhow::Result<()> {
    env.section("ratelimit");
    anyhow::bail!("the ratelimit demo section is not written yet")
}
