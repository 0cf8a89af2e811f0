#!/bin/sh
# Seeds each fuzz target's corpus with the real evidence samples and vendor roots.
set -eu
cd "$(dirname "$0")"
T=../testdata
mkdir -p corpus/nitro_document corpus/snp_report corpus/dcap_quote corpus/x509 corpus/policy_yaml corpus/evidence_input corpus/sim_evidence
cp "$T"/nitro/nitro_evervault_2022-10-13_prod.cbor corpus/nitro_document/
base64 -d "$T"/nitro/nitro_evervault_2023-09-18_debug.cbor.b64 > corpus/nitro_document/debug.cbor
cp "$T"/sev-snp/snp_*report.bin corpus/snp_report/
cp "$T"/sgx-dcap/sgx_v3_quote.bin "$T"/tdx-dcap/tdx_v4_quote.bin corpus/dcap_quote/
cp "$T"/sev-snp/*vcek* "$T"/sev-snp/*ask_ark* ../roots/*.pem corpus/x509/
printf 'allow_debug: false\nallowed_tee_types: [nitro, sev-snp]\nmax_age_seconds: 300\nmin_svns: {isv_svn: 1}\nreport_data_prefix: "abcd"\n' > corpus/policy_yaml/full.yaml
cp corpus/nitro_document/* corpus/snp_report/* corpus/dcap_quote/* "$T"/nitro/*.b64 corpus/evidence_input/
# Sim evidence shares the COSE_Sign1 envelope with Nitro documents.
cp corpus/nitro_document/* corpus/sim_evidence/
