//! Points `api::ui` at the web console to embed: `console/dist` when it was built
//! (`scripts/build-console.sh`), else a placeholder page that says how to build it, so that
//! `cargo build` alone never fails. `CONSOLE_DIST` is the directory, `CONSOLE_STAMP`
//! changes whenever a file in it does, so the host is compiled again with the new assets.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dist = manifest.join("../console/dist");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        dist
    } else {
        // Watched so that a console built later is picked up (a path that does not exist
        // would make this script run on every build).
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join("../console").display()
        );
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("console-placeholder");
        std::fs::create_dir_all(&out).unwrap();
        let page = out.join("index.html");
        // Written once: an unchanged page keeps its time, so the stamp stays the same.
        if std::fs::read_to_string(&page).ok().as_deref() != Some(PLACEHOLDER) {
            std::fs::write(&page, PLACEHOLDER).unwrap();
        }
        out
    };
    let dir = dir.canonicalize().unwrap();
    println!("cargo:rustc-env=CONSOLE_DIST={}", dir.display());
    println!("cargo:rustc-env=CONSOLE_STAMP={}", stamp(&dir));
}

/// The number of files, their total size and the latest modification time under `dir`.
fn stamp(dir: &Path) -> String {
    let (mut files, mut bytes, mut latest) = (0u64, 0u64, 0u128);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
                continue;
            }
            files += 1;
            bytes += meta.len();
            let modified = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok());
            latest = latest.max(modified.map_or(0, |m| m.as_nanos()));
        }
    }
    format!("{files}-{bytes}-{latest}")
}

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>durable-host console (not built)</title></head>
<body>
<h1>The console was not built</h1>
<p>This binary was compiled without <code>console/dist</code>. Build the console and the
host again:</p>
<pre>bash scripts/build-console.sh
cargo build -p durable-host</pre>
<p><code>scripts/run.sh</code> and <code>scripts/test.sh</code> do both.</p>
</body></html>
"#;
