//! Adds an rpath to the libtorch shared libraries so that `ctr-dl` and the test
//! binaries run without `LD_LIBRARY_PATH`. The libraries are found the same way
//! torch-sys finds them: `$LIBTORCH/lib`, or the `torch` package of the Python
//! named by `PYTHON_SYS_EXECUTABLE` when `LIBTORCH_USE_PYTORCH` is set (see
//! `.cargo/config.toml`, which points it at the project venv).
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

fn main() {
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
