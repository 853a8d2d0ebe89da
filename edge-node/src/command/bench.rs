pub fn run(_a: BenchArgs) -> anyhow::Result<()> {
    Ok(())
}
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}
