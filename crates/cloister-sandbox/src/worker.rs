//! The worker process main loop: harden, load one function, answer invocations.

use std::cell::Cell;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::rc::Rc;

use crate::WORKER_CHANNEL_FD;
use crate::engine::Engine;
use crate::frame::{FrameError, read_msg, write_msg};
use crate::hardening::{LandlockLevel, harden};
use crate::host::{Host, HostCall, HostRefusal, HostRequest, HostValue};
use crate::protocol::{FromWorker, LoadError, Ready, ToWorker};

/// Exit code of a worker that could not harden itself.
pub const EXIT_HARDENING_FAILED: i32 = 70;
/// Exit code of a worker whose channel broke or sent something unexpected.
pub const EXIT_PROTOCOL: i32 = 71;

/// Runs a worker on the inherited channel; returns the process exit code.
///
/// `heap_bytes` is the function's heap limit and `uid` the unprivileged uid to switch to when
/// started as root (both from the command line, so the process is hardened before the first
/// untrusted byte is read).
pub fn run(heap_bytes: usize, uid: u32) -> i32 {
    let hardened = match harden(WORKER_CHANNEL_FD, heap_bytes, uid) {
        Ok(hardened) => hardened,
        Err(_) => return EXIT_HARDENING_FAILED,
    };
    // SAFETY: the supervisor passes the channel as this descriptor, owned by nothing else here.
    let channel = Rc::new(unsafe { File::from_raw_fd(WORKER_CHANNEL_FD) });
    let load = match read_msg::<ToWorker>(&mut &*channel) {
        Ok(ToWorker::Load(load)) => load,
        _ => return EXIT_PROTOCOL,
    };
    let host = Rc::new(ChannelHost {
        channel: channel.clone(),
        next_id: Cell::new(0),
    });
    let mut engine = match Engine::new(load, host) {
        Ok(engine) => {
            if write_msg(
                &mut &*channel,
                &FromWorker::Loaded(Ok(Ready {
                    filesystem_isolated: hardened.landlock == LandlockLevel::Full,
                    privileges: hardened.privileges,
                })),
            )
            .is_err()
            {
                return EXIT_PROTOCOL;
            }
            engine
        }
        Err(e) => {
            let _ = write_msg(
                &mut &*channel,
                &FromWorker::Loaded(Err::<Ready, LoadError>(e)),
            );
            return 0;
        }
    };
    loop {
        let inv = match read_msg::<ToWorker>(&mut &*channel) {
            Ok(ToWorker::Invoke(inv)) => inv,
            Err(FrameError::Closed) => return 0,
            _ => return EXIT_PROTOCOL,
        };
        let outcome = engine.invoke(inv);
        let retire = outcome.retire;
        if write_msg(&mut &*channel, &FromWorker::Done(outcome)).is_err() {
            return EXIT_PROTOCOL;
        }
        if retire {
            return 0;
        }
        engine.prepare();
    }
}

/// Host calls over the worker's channel: a request is written and its answer read before the
/// function continues (the worker is single-threaded; the supervisor's deadline covers the
/// wait). A broken channel or an answer out of turn ends the worker: its supervisor is gone
/// or does not follow the protocol, and the function must not run on without its answers.
struct ChannelHost {
    channel: Rc<File>,
    next_id: Cell<u32>,
}

impl ChannelHost {
    fn send(&self, id: u32, request: HostRequest) {
        if write_msg(
            &mut &*self.channel,
            &FromWorker::Call(HostCall { id, request }),
        )
        .is_err()
        {
            std::process::exit(EXIT_PROTOCOL);
        }
    }
}

impl Host for ChannelHost {
    fn notify(&self, request: HostRequest) {
        self.send(0, request);
    }

    fn call(&self, request: HostRequest) -> Result<HostValue, HostRefusal> {
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        self.send(id, request);
        match read_msg::<ToWorker>(&mut &*self.channel) {
            Ok(ToWorker::Answer(a)) if a.id == id => a.result,
            Err(FrameError::Closed) => std::process::exit(0),
            _ => std::process::exit(EXIT_PROTOCOL),
        }
    }
}
