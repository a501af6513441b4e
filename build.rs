//! Adds an rpath to the libtorch shared libraries so that `ctr-dl` and the test
//! binaries run without `LD_LIBRARY_PATH`. The libraries are found the same way
//! torch-sys finds them: `$LIBTORCH/lib`, or the `torch` package of the Python
//! named by `PYTHON_SYS_EXECUTABLE` when `LIBTORCH_USE_PYTORCH` is set (see
//! `.cargo/config.toml`, which points it at the project venv).
//!
//! With the `lightgbm` feature it also links LightGBM's C library, the one
//! the `lightgbm` wheel in the project venv ships, and puts it on the rpath.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    if std::env::var("LIBTORCH_USE_PYTORCH").is_ok() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
        let out = Command::new(python)
            .args([
                "-c",
                "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
            ])
            .output()
            .ok()?;
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return Some(PathBuf::from(dir));
        }
    }
    None
}

/// Link the C library `lib<lib>.so` that a Python wheel ships in its
/// package's `lib/` folder. `$<dir_var>` names the package folder:
/// `.cargo/config.toml` points it at `.venv/<package>`, which
/// scripts/setup.sh links to the installed package, as it does for libtorch.
/// The package's version file must start with `major`, the C API the
/// declarations in the crate were written against.
fn link_wheel_library(dir_var: &str, lib: &str, version_file: &str, major: &str) {
    println!("cargo:rerun-if-env-changed={dir_var}");
    let fail = |why: String| -> ! {
        eprintln!(
            "error: {why}; run scripts/setup.sh, which installs it into .venv, or set {dir_var}"
        );
        std::process::exit(1);
    };
    let Some(dir) = std::env::var_os(dir_var).map(PathBuf::from) else {
        fail(format!("{dir_var} is not set"))
    };
    let lib_dir = dir.join("lib");
    let file = lib_dir.join(format!("lib{lib}.so"));
    if !file.exists() {
        fail(format!("{} not found", file.display()));
    }
    let version_path = dir.join(version_file);
    let version = std::fs::read_to_string(&version_path).unwrap_or_default();
    if !version.trim().starts_with(major) {
        fail(format!(
            "{} says {:?}, not the {major}x release this crate declares",
            version_path.display(),
            version.trim()
        ));
    }
    println!("cargo:rerun-if-changed={}", file.display());
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib={lib}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}

fn main() {
    if std::env::var_os("CARGO_FEATURE_LIGHTGBM").is_some() {
        link_wheel_library("LIGHTGBM_DIR", "_lightgbm", "VERSION.txt", "4.");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    println!("cargo:rerun-if-changed=build.rs");
    match torch_lib_dir() {
        Some(dir) if dir.exists() => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            // Nothing in the program calls into libtorch_cuda, so the linker's
            // --as-needed drops it, and without it loaded libtorch reports no
            // CUDA device. Keep it as a dependency when the libtorch has it.
            if dir.join("libtorch_cuda.so").exists() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
            }
        }
        _ => println!(
            "cargo:warning=libtorch not found: run scripts/setup.sh (binaries will need LD_LIBRARY_PATH)"
        ),
    }
}
