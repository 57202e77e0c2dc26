//! `twofa-admin`: see `twofa_admin::USAGE`. Parses, runs against the table the environment
//! names, prints; exit 2 on a usage error, 1 when the command failed.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match twofa_admin::parse(&args) {
        Ok(twofa_admin::Command::Help) => {
            print!("{}", twofa_admin::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("twofa-admin: {e}\n\n{}", twofa_admin::USAGE);
            return ExitCode::from(2);
        }
    };
    match twofa_admin::run_from_env(command).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("twofa-admin: {e}");
            ExitCode::FAILURE
        }
    }
}
