//! `cloister-worker`: one sandboxed function worker, started by the executor as
//! `cloister-worker __worker HEAP_BYTES UID` with its channel at descriptor 3. It hardens
//! itself (`cloister_sandbox::worker`) before anything else happens in the process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--version") | Some("-V") => {
            println!(
                "{}",
                cloister_types::trusted::version_line(cloister_types::trusted::WORKER_BIN)
            );
            ExitCode::SUCCESS
        }
        Some(cloister_sandbox::WORKER_ARG) => {
            let heap = args
                .get(2)
                .and_then(|h| h.parse::<usize>().ok())
                .unwrap_or(0);
            // A missing or unparsable uid is 0, which the worker refuses when started as root.
            let uid = args.get(3).and_then(|u| u.parse::<u32>().ok()).unwrap_or(0);
            let code = cloister_sandbox::worker::run(heap, uid);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        _ => {
            eprintln!(
                "cloister-worker: started by cloister-executord only (`{} HEAP UID`, channel at \
                 descriptor 3)",
                cloister_sandbox::WORKER_ARG
            );
            ExitCode::from(2)
        }
    }
}
