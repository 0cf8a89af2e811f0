//! The capabilities a function may use, composed per function from its manifest (nothing
//! ambient): each host request a worker makes is answered by the capability that serves it,
//! if the manifest grants that capability, and refused with `capability_not_granted`
//! otherwise. `context.log` needs no grant; the supervisor keeps those lines itself
//! (`crate::worker`).

use cloister_sandbox::host::{HostRefusal, HostRequest, HostValue};
use cloister_types::ErrorCode;

use crate::secrets::RunManifest;
use crate::worker::Capabilities;

/// The capabilities one invocation of a function was granted.
#[derive(Debug, Default)]
pub struct Granted {}

impl Granted {
    /// What the manifest `m` grants.
    pub fn for_manifest(_m: &RunManifest) -> Self {
        Self {}
    }
}

#[async_trait::async_trait]
impl Capabilities for Granted {
    async fn answer(&self, request: HostRequest) -> Result<HostValue, HostRefusal> {
        Err(HostRefusal::new(
            ErrorCode::CapabilityNotGranted,
            format!(
                "this function's manifest grants no `{}` capability",
                request.capability()
            ),
        ))
    }
}
