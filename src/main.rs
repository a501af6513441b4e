//! The `ctr-dl` binary: parse arguments, run, print any error once with its
//! whole chain of causes.
fn main() -> std::process::ExitCode {
    ctr_dl::cli::main()
}
