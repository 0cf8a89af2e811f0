//! `cloister-keyvaultd`: keyvault's executable. All of it is in the `cloister-keyvaultd`
//! crate; this file only makes `cargo install cloister-cli` install it next to `cloister`.

fn main() -> std::process::ExitCode {
    cloister_keyvaultd::main()
}
