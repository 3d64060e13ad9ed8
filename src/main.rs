use std::process::ExitCode;

fn main() -> ExitCode {
    let code = tandem::cli::main();
    ExitCode::from(code)
}
