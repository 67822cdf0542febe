//! Writes every OpenAPI document to files for inspection:
//! `cargo run -p manifold-kube-openapi --example dump_openapi [DIR]`
//! (default `target/openapi`, relative to the working directory).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/openapi".into()),
    );
    std::fs::create_dir_all(dir.join("v3"))?;
    if let Err(error) = manifold_kube_openapi::check() {
        eprintln!("self-check failed: {error}");
    }

    let mut total = 0;
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    let index = manifold_kube_openapi::v3_index("");
    std::fs::write(dir.join("v3/index.json"), pretty(&index))?;
    for doc in manifold_kube_openapi::v3_group_versions() {
        let file = dir
            .join("v3")
            .join(format!("{}.json", doc.path.replace('/', "__")));
        std::fs::write(&file, pretty(&doc.document))?;
        println!("{:>9} bytes  {}", doc.json.len(), file.display());
        total += doc.json.len();
    }
    let v2 = manifold_kube_openapi::v2_document();
    let file = dir.join("v2.json");
    std::fs::write(&file, pretty(&v2.document))?;
    println!("{:>9} bytes  {}", v2.json.len(), file.display());
    total += v2.json.len();
    println!("{total:>9} bytes  total (compact JSON as served)");
    Ok(())
}
