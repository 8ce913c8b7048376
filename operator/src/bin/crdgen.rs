//! Writes burst's CRDs, one YAML file each, into the DIRs given (default: `crds/` and the Helm chart's
//! `charts/burst/crds/`, which must stay equal; tests check both).
fn main() -> anyhow::Result<()> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    if dirs.is_empty() {
        dirs = vec!["crds".into(), "charts/burst/crds".into()];
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in burst_operator::crd::all() {
            let path = dir.join(file);
            std::fs::write(&path, burst_operator::crd::to_yaml(&crd)?)?;
            println!("{}", path.display());
        }
    }
    Ok(())
}
