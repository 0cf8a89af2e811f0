//! Attesters against fake kernel interfaces laid out as the kernel does, and provider selection.

use ciborium::Value;
use cloister_attest::TeeType;
use cloister_attest::attester::{
    Attester, NsmAttester, NsmDevice, Probe, ProviderChoice, TsmAttester,
};
use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Creates `<root>/sys/kernel/config/tsm/report/<entry>` with the files the kernel would create.
fn fake_tsm(root: &Path, entry: &str, provider: &str) -> PathBuf {
    let dir = root.join("sys/kernel/config/tsm/report").join(entry);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
    std::fs::write(dir.join("generation"), "0\n").unwrap();
    std::fs::write(dir.join("inblob"), b"").unwrap();
    let fifo = CString::new(dir.join("outblob").to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    dir
}

/// A fake kernel: for each request, waits for the reader of `outblob`, bumps `generation`
/// by `bump`, and answers with `REPORT:` followed by the 64 bytes written to `inblob`.
fn fake_kernel(dir: PathBuf, requests: usize, bump: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut generation = 0u64;
        for _ in 0..requests {
            // Wait for a new request (the attester writes inblob, then opens outblob), so the
            // previous reader has certainly closed the FIFO before we open it again.
            let inblob = loop {
                let data = std::fs::read(dir.join("inblob")).unwrap();
                if !data.is_empty() {
                    break data;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            std::fs::write(dir.join("inblob"), b"").unwrap();
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("outblob"))
                .unwrap();
            generation += bump;
            std::fs::write(dir.join("generation"), format!("{generation}\n")).unwrap();
            out.write_all(b"REPORT:").unwrap();
            out.write_all(&inblob).unwrap();
        }
    })
}

#[test]
fn configfs_tsm_binds_the_report_data_and_checks_the_generation() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_tsm(root.path(), "e1", "tdx_guest");
    let kernel = fake_kernel(dir.clone(), 2, 1);
    let attester =
        TsmAttester::open_entry(&root.path().join("sys/kernel/config/tsm/report"), "e1").unwrap();
    assert_eq!(attester.tee(), TeeType::Tdx);
    for fill in [0xab_u8, 0xcd] {
        let report_data = [fill; 64];
        let produced = attester.attest(&report_data).unwrap();
        assert_eq!(produced.tee, TeeType::Tdx);
        assert_eq!(&produced.evidence[..7], b"REPORT:");
        assert_eq!(&produced.evidence[7..], &report_data);
        assert!(produced.aux.is_none());
    }
    kernel.join().unwrap();
    // An entry we did not create is left in place.
    drop(attester);
    assert!(dir.exists());
}

#[test]
fn configfs_tsm_discards_results_when_another_writer_raced() {
    let root = tempfile::tempdir().unwrap();
    let dir = fake_tsm(root.path(), "e1", "sev_guest");
    // The generation jumps by 2 every time: someone else wrote inblob in between.
    let kernel = fake_kernel(dir, 3, 2);
    let attester =
        TsmAttester::open_entry(&root.path().join("sys/kernel/config/tsm/report"), "e1").unwrap();
    assert_eq!(attester.tee(), TeeType::SevSnp);
    let err = attester.attest(&[1; 64]).unwrap_err();
    assert!(err.to_string().contains("written concurrently"), "{err}");
    kernel.join().unwrap();
}

#[test]
fn an_unknown_provider_is_refused() {
    let root = tempfile::tempdir().unwrap();
    fake_tsm(root.path(), "e1", "arm_cca_guest");
    let err = TsmAttester::open_entry(&root.path().join("sys/kernel/config/tsm/report"), "e1")
        .unwrap_err();
    assert!(err.to_string().contains("arm_cca_guest"), "{err}");
}

#[test]
fn auto_selection_probes_nsm_then_configfs_tsm_and_never_silently_picks_sim() {
    let empty = tempfile::tempdir().unwrap();
    let probe = Probe::at(empty.path());
    assert_eq!(probe.detect().unwrap(), None);
    let err = probe.select(ProviderChoice::Auto, false).unwrap_err();
    assert!(err.to_string().contains("tee.provider: sim"), "{err}");
    assert_eq!(
        probe.select(ProviderChoice::Auto, true).unwrap(),
        TeeType::Sim
    );
    assert!(
        probe
            .select(ProviderChoice::Fixed(TeeType::Sim), false)
            .is_err()
    );
    assert_eq!(
        probe
            .select(ProviderChoice::Fixed(TeeType::Tdx), false)
            .unwrap(),
        TeeType::Tdx
    );

    let snp = tempfile::tempdir().unwrap();
    fake_tsm(snp.path(), "probe", "sev_guest");
    let probe = Probe::at(snp.path()).with_tsm_entry("probe");
    assert_eq!(probe.detect().unwrap(), Some(TeeType::SevSnp));
    assert_eq!(
        probe.select(ProviderChoice::Auto, false).unwrap(),
        TeeType::SevSnp
    );
    assert!(
        probe.attester(TeeType::Tdx).is_err(),
        "configfs-tsm serves SEV-SNP here, not TDX"
    );
    assert_eq!(
        probe.attester(TeeType::SevSnp).unwrap().tee(),
        TeeType::SevSnp
    );

    let nitro = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(nitro.path().join("dev")).unwrap();
    std::fs::write(nitro.path().join("dev/nsm"), b"").unwrap();
    assert_eq!(
        Probe::at(nitro.path()).detect().unwrap(),
        Some(TeeType::Nitro)
    );
}

#[test]
fn provider_choice_parses_the_config_values() {
    assert_eq!(
        ProviderChoice::from_str("auto").unwrap(),
        ProviderChoice::Auto
    );
    assert_eq!(
        ProviderChoice::from_str("sev-snp").unwrap(),
        ProviderChoice::Fixed(TeeType::SevSnp)
    );
    assert_eq!(
        ProviderChoice::from_str("nitro").unwrap(),
        ProviderChoice::Fixed(TeeType::Nitro)
    );
    assert!(
        ProviderChoice::from_str("sgx2")
            .unwrap_err()
            .to_string()
            .contains("auto, sim, nitro, sev-snp or tdx")
    );
}

/// A fake NSM that speaks the device's CBOR protocol.
struct FakeNsm {
    document: Vec<u8>,
    refuse: bool,
    seen_user_data: std::sync::Mutex<Vec<u8>>,
}

impl NsmDevice for FakeNsm {
    fn call(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        let value: Value = ciborium::from_reader(request).map_err(std::io::Error::other)?;
        let (variant, body) = value.as_map().unwrap()[0].clone();
        assert_eq!(variant.as_text(), Some("Attestation"));
        let fields = body.as_map().unwrap();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v.clone())
        };
        *self.seen_user_data.lock().unwrap() = field("user_data")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap();
        assert_eq!(field("nonce"), Some(Value::Null));
        let response = if self.refuse {
            Value::Map(vec![(
                Value::Text("Error".into()),
                Value::Text("InvalidArgument".into()),
            )])
        } else {
            Value::Map(vec![(
                Value::Text("Attestation".into()),
                Value::Map(vec![(
                    Value::Text("document".into()),
                    Value::Bytes(self.document.clone()),
                )]),
            )])
        };
        let mut out = Vec::new();
        ciborium::into_writer(&response, &mut out).unwrap();
        Ok(out)
    }
}

#[test]
fn nsm_requests_carry_the_report_data_and_return_the_document() {
    let document = std::fs::read(format!(
        "{}/testdata/nitro/nitro_evervault_2022-10-13_prod.cbor",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let nsm = FakeNsm {
        document: document.clone(),
        refuse: false,
        seen_user_data: Default::default(),
    };
    let attester = NsmAttester::new(nsm);
    let produced = attester.attest(&[7; 64]).unwrap();
    assert_eq!(produced.tee, TeeType::Nitro);
    assert_eq!(produced.evidence, document);
    let refusing = NsmAttester::new(FakeNsm {
        document,
        refuse: true,
        seen_user_data: Default::default(),
    });
    let err = refusing.attest(&[7; 64]).unwrap_err();
    assert!(err.to_string().contains("InvalidArgument"), "{err}");
}

#[test]
fn nsm_fake_saw_the_report_data() {
    let nsm = FakeNsm {
        document: vec![1],
        refuse: false,
        seen_user_data: Default::default(),
    };
    let attester = NsmAttester::new(nsm);
    attester.attest(&[9; 64]).unwrap();
    // The attester owns the device; check through a second instance sharing nothing.
    let nsm = FakeNsm {
        document: vec![1],
        refuse: false,
        seen_user_data: Default::default(),
    };
    let request_user_data = {
        let a = NsmAttester::new(&nsm);
        a.attest(&[5; 64]).unwrap();
        nsm.seen_user_data.lock().unwrap().clone()
    };
    assert_eq!(request_user_data, vec![5; 64]);
}

impl NsmDevice for &FakeNsm {
    fn call(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        (*self).call(request)
    }
}
