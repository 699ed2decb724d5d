//! Embeds the dashboard's web bundle (`cli/dashboard-web/dist/`, built by
//! `scripts/build-web.sh`: `npm ci` and esbuild) into the `mapper` binary.
//!
//! The bundle is generated, not committed. When it is missing, or was built from other sources
//! than those in `cli/dashboard-web/` (the hash `build.mjs` writes into `dist/source-hash.txt`
//! is recomputed here), the crate fails to compile with a message naming the command to run,
//! instead of serving a page that is not the one in the tree.

use std::fmt::Write as _;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

/// The files `dist/` is served from, in the order `src/dashboard/assets.rs` names them.
const ASSETS: [(&str, &str); 3] = [("INDEX_HTML", "index.html"), ("APP_JS", "app.js"), ("APP_CSS", "app.css")];

/// What the bundle is built from (besides every file under `src/`), as `build.mjs` hashes it.
const INPUTS: [&str; 3] = ["package.json", "package-lock.json", "build.mjs"];

const FIX: &str = "run scripts/build-web.sh (npm ci and esbuild in cli/dashboard-web) before cargo; \
                   scripts/test.sh and scripts/demo.sh do";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let web = manifest.join("dashboard-web");
    for input in INPUTS.iter().chain(&["src", "dist"]) {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    let code = match check(&web) {
        Ok(()) => {
            let mut code = String::new();
            for (name, file) in ASSETS {
                let path = web.join("dist").join(file);
                let _ = writeln!(code, "pub const {name}: &[u8] = include_bytes!({:?});", path.display().to_string());
            }
            code
        }
        Err(problem) => format!("compile_error!({:?});\n", format!("the dashboard's web bundle: {problem}: {FIX}")),
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("dashboard_assets.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}

/// Whether `dist/` holds every asset, built from the sources now in `web`.
fn check(web: &Path) -> Result<(), String> {
    let dist = web.join("dist");
    for (_, file) in ASSETS {
        if !dist.join(file).is_file() {
            return Err(format!("{} is missing", dist.join(file).display()));
        }
    }
    let recorded = std::fs::read_to_string(dist.join("source-hash.txt"))
        .map_err(|e| format!("cannot read {}: {e}", dist.join("source-hash.txt").display()))?;
    let actual = source_hash(web).map_err(|e| format!("cannot read the sources in {}: {e}", web.display()))?;
    if recorded.trim() != actual {
        return Err(format!(
            "{} was built from other sources than those in {} (hash {} recorded, {actual} now)",
            dist.display(),
            web.display(),
            recorded.trim()
        ));
    }
    Ok(())
}

/// FNV-1a 64 over every input, in order of its path relative to `web` (`/`-separated): the
/// path, a zero byte, the content, a zero byte. `build.mjs` computes the same.
fn source_hash(web: &Path) -> std::io::Result<String> {
    let mut files: Vec<String> = INPUTS.iter().map(|s| (*s).to_owned()).collect();
    list(web, Path::new("src"), &mut files)?;
    files.sort();
    let mut hasher = fnv::FnvHasher::default();
    for file in &files {
        hasher.write(file.as_bytes());
        hasher.write(&[0]);
        hasher.write(&std::fs::read(web.join(file))?);
        hasher.write(&[0]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

fn list(web: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(web.join(dir))? {
        let entry = entry?;
        let relative = dir.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list(web, &relative, out)?;
        } else {
            let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}
