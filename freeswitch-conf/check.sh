#!/usr/bin/env bash
# Validates freeswitch-conf/ without a FreeSWITCH: every XML file well-formed (xmllint),
# then the facts check_conf.py asserts, against the recorded config in the fixtures.
# Then proves the checks can fail: breaks a copy of the files in known ways and expects
# each breakage to be caught.
#
# Needs: xmllint (Debian libxml2-utils) and python3 (stdlib only). Runs from any folder.
# TOM_FIXTURES: the fixtures/freeswitch folder (default: <repo>/../shared/fixtures/freeswitch).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
fixtures="${TOM_FIXTURES:-$(cd "$repo/.." && pwd)/shared/fixtures/freeswitch}"
export TOM_FIXTURES="$fixtures"

if ! command -v xmllint >/dev/null 2>&1; then
    echo "check.sh: xmllint not found: install libxml2-utils (apt-get install libxml2-utils)" >&2
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "check.sh: python3 not found" >&2
    exit 1
fi
if [[ ! -f "$fixtures/config/freeswitch.xml" ]]; then
    echo "check.sh: recorded config not found at $fixtures/config/freeswitch.xml (set TOM_FIXTURES)" >&2
    exit 1
fi

mapfile -t xml_files < <(find "$here" -name '*.xml' -type f | sort)
echo "xmllint: ${#xml_files[@]} files, and the recorded config"
# The recorded config is checked too: it proves xmllint accepts FreeSWITCH files with
# pre-process directives, which ours share.
xmllint --noout "${xml_files[@]}" "$fixtures/config/freeswitch.xml"
echo "xmllint: all well-formed"

python3 "$here/check_conf.py" --conf-dir "$here"

# --- the checks must be able to fail -------------------------------------------------
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# expect_caught NAME FILE EXPECTED-MESSAGE SED-EXPRESSION
# Copies the tree, applies the sed expression to FILE, and requires check_conf.py to exit 1
# with EXPECTED-MESSAGE in its output.
expect_caught() {
    local name="$1" file="$2" expected="$3" expr="$4"
    local copy="$scratch/$name"
    cp -r "$here" "$copy"
    sed -i -e "$expr" "$copy/$file"
    if cmp -s "$here/$file" "$copy/$file"; then
        echo "check.sh: self-test '$name' changed nothing in $file (stale sed expression)" >&2
        exit 1
    fi
    local out status=0
    out="$(python3 "$copy/check_conf.py" --conf-dir "$copy" 2>&1)" || status=$?
    if [[ $status -ne 1 ]] || ! grep -qF -- "$expected" <<<"$out"; then
        echo "check.sh: self-test '$name': check_conf.py did not report '$expected' (exit $status)" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "self-test: caught $name"
}

expect_caught literal-password autoload_configs/event_socket.conf.xml \
    'password must be $${event_socket_password}' \
    's/value="\$\${event_socket_password}"/value="ClueCon"/'
expect_caught public-listen-ip autoload_configs/event_socket.conf.xml \
    'is not a loopback address' \
    's/name="listen-ip" value="127.0.0.1"/name="listen-ip" value="0.0.0.0"/'
expect_caught invented-param autoload_configs/event_socket.conf.xml \
    'parameters not in the recorded config' \
    's|<param name="nat-map" value="false"/>|&<param name="no-such-param" value="1"/>|'
expect_caught socket-not-full dialplan/tom.xml \
    "must use exactly 'async full'" \
    's/ async full"/ async"/'
expect_caught no-continue-on-fail dialplan/tom.xml \
    'set continue_on_fail=true before the fallback bridge' \
    '/data="continue_on_fail=true"/d'
expect_caught no-fallback dialplan/tom.xml \
    'no bridge after the socket action' \
    '/application="bridge"/d'
expect_caught directive-in-comment vars/tom.xml \
    'pre-process directive inside an XML comment' \
    's|^<include>$|<include>\n  <!-- <X-PRE-PROCESS cmd="set" data="tom_engines=10.0.0.1:8084"/> -->|'
expect_caught engine-without-port vars/tom.xml \
    'no explicit port' \
    's/tom_engines=127.0.0.1:8084|127.0.0.1:8085/tom_engines=127.0.0.1:8084|127.0.0.2/'
expect_caught distributor-out-of-step autoload_configs/distributor.conf.xml \
    'differs from tom_engines' \
    '/127.0.0.1:8085/d'
expect_caught committed-password vars/tom.xml \
    'must stay' \
    's/event_socket_password=CHANGE_ME_tom_esl_password/event_socket_password=s3cret-from-prod/'

# xmllint itself must reject a broken file.
cp -r "$here" "$scratch/broken-xml"
sed -i -e 's|</extension>||' "$scratch/broken-xml/dialplan/tom.xml"
if xmllint --noout "$scratch/broken-xml/dialplan/tom.xml" 2>/dev/null; then
    echo "check.sh: self-test 'broken-xml': xmllint accepted an unclosed <extension>" >&2
    exit 1
fi
echo "self-test: caught broken-xml"

echo "check.sh: freeswitch-conf OK"
