use std::process::ExitCode;

fn main() -> ExitCode {
    tidegate::run()
}
