//! Writes burst's CRDs: into DIR (default `crds/`), one YAML file each.
fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "crds".into()));
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in burst_operator::crd::all() {
        let path = dir.join(file);
        std::fs::write(&path, burst_operator::crd::to_yaml(&crd)?)?;
        println!("{}", path.display());
    }
    Ok(())
}
