//! `cloister-executord`: the executor's executable. All of it is in the `cloister-executord`
//! crate; this file only makes `cargo install cloister-cli` install it next to `cloister`.

fn main() -> std::process::ExitCode {
    cloister_executord::main()
}
