#!/bin/bash
# Writes a small seed corpus for each target into corpus/<target>/ (run from this directory).
set -euo pipefail
frame() { # one length-prefixed frame holding $1
  local n=${#1}
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((n & 255)) $(((n >> 8) & 255)) $(((n >> 16) & 255)) $(((n >> 24) & 255)))%s" "$1"
}
mkdir -p corpus/frame corpus/gateway_json corpus/secret_path
frame '{"Load":{"code":"function handler(p){return p}","entrypoint":"handler","memory_bytes":67108864,"stack_bytes":1048576,"load_timeout_ms":1000,"max_output_bytes":1048576}}' > corpus/frame/load
frame '{"Invoke":{"params":{"a":1},"secrets":{"K":"v"},"context":{"function_name":"f","function_id":"id","version":1,"execution_id":"e","timeout_ms":100}}}' > corpus/frame/invoke
frame '{"Loaded":{"Ok":{"filesystem_isolated":true,"privileges":"DedicatedUid"}}}' > corpus/frame/loaded
{ frame '{"Done":{"result":{"Ok":1},"logs":["x"],"retire":false}}'; frame '{"Done":{"result":{"Err":{"code":"function_memory_limit","message":"m","stack":null}},"logs":[],"retire":true}}'; } > corpus/frame/done
echo '{"name":"add","runtime":"javascript","code":"function handler(p){return p}","requiredSecrets":["API_KEY","db/PASSWORD"],"limits":{"timeoutMs":1000,"memoryMb":32}}' > corpus/gateway_json/deploy
echo '{"role":"developer","label":"ci","forIdentity":"id"}' > corpus/gateway_json/token
echo '{"signed":"AAAA"}' > corpus/gateway_json/signed
echo '{"params":{"a":[1,2,{"b":null}]}}' > corpus/gateway_json/invoke
printf 'function-0b9c6d3e-1111-4222-8333-444455556666/production/default/API_KEY' > corpus/secret_path/path
printf 'db/PASSWORD\nAPI_KEY\ncache/TOKEN' > corpus/secret_path/list
