#!/usr/bin/env bash
# The device side on an emulated Raspberry Pi 4: a 64-bit Arm (aarch64) Python from Debian's arm64 packages, run
# by qemu-user as a Cortex-A72 (QEMU_CPU=cortex-a72 unless QEMU_CPU is set), with the wheel built from this
# checkout and the Pi's package set. No hardware, no chroot, no binfmt: qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11.
#
#   bash tools/arm64_check.sh        # ARM64_WORK=DIR keeps the aarch64 root and outputs elsewhere
#
# On x86 (this checkout's .venv) it trains LeNet-5 on the bundled digits, converts it for rpi4, signs the set and
# writes the held-out digits as two videos: lossless (FFV1), so that both machines classify the same pixels, and
# MJPEG, as cameras deliver them. Under emulation, pass 1 (pip install ".[litert,sign]": ai-edge-litert, numpy 2):
# TensorFlow is absent, `devices --detect` names rpi4, `verify --run --trust-key` passes every artifact LiteRT can
# run, `classify --trust-key` of each TFLite artifact on both videos, `profile`, and `profile`/`verify --run` driven
# from x86 over a real OpenSSH server on loopback with the emulated Python as the board's edgecnn. Pass 2 (the 32-bit Pi row's
# package set, on aarch64: tflite-runtime 2.14 with numpy<2): verify --run and classify again. Every classify is
# compared frame by frame with the same command on x86; the last line is
#   arm64: top-1 agreement N/M with x86 (lossless video ...; MJPEG video ...)
# and the exit status is 0 only when every self-check passed, N = M, and every MJPEG frame that disagrees is one
# x86 found nearly tied (ffmpeg's MJPEG decoding is not bit-exact across CPUs: the line before says how much).
# Without qemu-user-static (and no apt to install it) or the package registries it prints "arm64: skipped: REASON"
# and exits 0. Emulated timings say nothing about a real board: they are printed only to show that profile runs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${ARM64_WORK:-$HOME/.cache/edgecnn/arm64}
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
ROOT=$WORK/root
OUT=$WORK/out
mkdir -p "$WORK" "$OUT"
skip() { echo "arm64: skipped: $*"; exit 0; }
say() { echo "[arm64] $*" >&2; }

# ---- qemu-user -------------------------------------------------------------------------------------------------
if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing qemu-user-static"
        (timeout 300 apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q qemu-user-static >/dev/null 2>&1) || true
    fi
    command -v qemu-aarch64-static >/dev/null 2>&1 || skip "qemu-aarch64-static is not installed (apt-get install qemu-user-static)"
fi

# ---- the aarch64 Python userland (Debian's arm64 packages, unpacked; cached in $ROOT) ------------------------------
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
    command -v apt-get >/dev/null 2>&1 || skip "building the aarch64 root needs apt-get (Debian/Ubuntu)"
    say "building the aarch64 Python root in $ROOT (Debian arm64 packages)"
    APT_DIR=$WORK/apt
    rm -rf "$APT_DIR" "$ROOT.partial" && mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs" "$ROOT.partial"
    # a private package state: the host's apt configuration and dpkg architectures stay as they are
    O=(-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o "Dir::State::Lists=$APT_DIR/lists"
       -o "Dir::Cache=$APT_DIR/cache" -o Dir::State::status=/dev/null -o Debug::NoLocking=1)
    timeout 600 apt-get "${O[@]}" update -q >/dev/null 2>&1 || skip "apt-get update for arm64 failed (no package registry?)"
    # python3.11 and what it links (and libstdc++ for the wheels), without the tools a root of our own never runs
    PKGS=$(apt-cache "${O[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
        --no-enhances python3.11 libstdc++6 2>/dev/null | grep -v '^[ <]' | sort -u \
        | grep -vxE 'dpkg|install-info|tar|perl|perl-base|perl-modules-5[.0-9]*|libperl5[.0-9]*|mailcap|mime-support|readline-common|libgdbm-compat4')
    [ -n "$PKGS" ] || skip "python3.11 is not in this distribution's arm64 archive"
    (cd "$APT_DIR/debs" && timeout 900 apt-get "${O[@]}" download $PKGS >/dev/null 2>&1) || skip "downloading the arm64 packages failed"
    for deb in "$APT_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT.partial"; done
    # what the guest reads for its CPU and board (qemu -L serves ROOT's files first): LiteRT segfaults in Interpreter()
    # without an arm64 /proc/cpuinfo; the device-tree model is the Pi 4's, as its kernel writes it (a stand-in for
    # hardware that cannot exist here; detection reads it as on a real Pi)
    mkdir -p "$ROOT.partial/proc/device-tree"
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
    done > "$ROOT.partial/proc/cpuinfo"
    printf 'Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n' >> "$ROOT.partial/proc/cpuinfo"
    printf 'Raspberry Pi 4 Model B Rev 1.4\0' > "$ROOT.partial/proc/device-tree/model"
    rm -rf "$ROOT" && mv "$ROOT.partial" "$ROOT"
    say "root ready: $(du -sh "$ROOT" | cut -f1), $(ls "$APT_DIR"/debs/*.deb | wc -l) packages"
fi
ARM_PY=("qemu-aarch64-static" "-L" "$ROOT" "$ROOT/usr/bin/python3.11")
arm() { local site=$1; shift; PYTHONPATH="$site" timeout 600 "${ARM_PY[@]}" "$@"; }

# ---- x86: the project's environment, a LeNet-5 run, its rpi4 artifacts (signed) and a held-out video ---------------
source tools/_setup.sh
cd "$REPO"
X86=.venv/bin/python
if [ ! -f "$WORK/x86/run/edgecnn-run.json" ]; then
    say "training LeNet-5 on the bundled digits (x86)"
    rm -rf "$WORK/x86/run"
    $X86 -m edgecnn train lenet5-digits --out "$WORK/x86/run" --quiet >/dev/null
fi
say "converting for rpi4 and signing (x86, this checkout's converter)"
$X86 -m edgecnn convert "$WORK/x86/run" --device rpi4 --out "$WORK/x86/art" --force --quiet >/dev/null
[ -f "$WORK/x86/signing.pub" ] || $X86 tools/arm64_helpers.py keys "$WORK/x86"
$X86 -m edgecnn sign "$WORK/x86/art" --key "$WORK/x86/signing.pem" >/dev/null
$X86 tools/arm64_helpers.py videos "$WORK/x86/run" "$WORK/x86"
ART=$WORK/x86/art

# ---- the wheel from this checkout, installed for aarch64 ----------------------------------------------------------
rm -rf "$WORK/dist" && $X86 -m pip wheel -q --no-deps "$REPO" -w "$WORK/dist" 2>/dev/null
WHEEL=$(ls "$WORK"/dist/edgecnn-*.whl)
PLATFORMS=(--platform manylinux2014_aarch64)
for n in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${n}_aarch64"); done  # ai-edge-litert: manylinux_2_27
install_for_arm() {  # SITE, requirements...
    local site=$1; shift
    rm -rf "$site"
    $X86 -m pip install -q --disable-pip-version-check --target "$site" --only-binary=:all: --python-version 3.11 \
        --abi cp311 --implementation cp "${PLATFORMS[@]}" "$@" >"$site.log" 2>&1 \
        || skip "pip could not install $* for aarch64 (registry unreachable?): $(grep -m1 -E 'ERROR' "$site.log")"
}
say "installing .[litert,sign] for aarch64 (wheels only: no compiler)"
install_for_arm "$WORK/site-litert" "$WHEEL[litert,sign]"
say "installing the 32-bit Pi row's package set for aarch64: tflite-runtime 2.14 + numpy<2"
install_for_arm "$WORK/site-tflite214" "$WHEEL[opencv]" "tflite-runtime==2.14.*" "numpy<2"

# ---- under emulation ---------------------------------------------------------------------------------------------
checks_failed=0
: >"$OUT/agreement.tsv"  # pass, artifact, video, agreeing frames, frames, near-tie flips
compare() {  # PASS ARTIFACT VIDEO: the same classify on x86, then frame by frame
    local pass=$1 a=$2 v=$3
    [ -f "$OUT/x86-$a-$v.jsonl" ] || $X86 -m edgecnn classify "$ART/$a" --device rpi4 --source "file:$WORK/x86/heldout-$v" \
        --sink "jsonl:$OUT/x86-$a-$v.jsonl" >/dev/null 2>&1
    $X86 tools/arm64_helpers.py compare "$OUT/$pass-$a-$v.jsonl" "$OUT/x86-$a-$v.jsonl" "$pass" "$a" "$v" >>"$OUT/agreement.tsv"
    tail -1 "$OUT/agreement.tsv" | awk -F'\t' '{printf "arm64 %s: classify %s on the %s video: top-1 agreement %d/%d with x86%s\n",
        $1, $2, $3, $4, $5, ($4 < $5 ? sprintf(" (%d near-tie flip(s))", $6) : "")}'
}
run_pass() {  # NAME SITE ARTIFACTS...
    local name=$1 site=$2; shift 2
    local version trust=()
    arm "$site" -c "import importlib.util as u, sys; sys.exit(1 if u.find_spec('tensorflow') or u.find_spec('keras') else 0)" \
        || { echo "arm64 $name: TensorFlow is installed in the device environment"; checks_failed=1; }
    version=$(arm "$site" -c "from edgecnn.runtime.litert import _interpreter_class as c; print(c()[1], c()[2])")
    [ "$name" = litert ] && trust=(--trust-key "$WORK/x86/signing.pub")
    if ! arm "$site" -m edgecnn verify "$ART" --run "${trust[@]}" >"$OUT/$name-verify.txt" 2>&1; then
        checks_failed=1; echo "arm64 $name: verify --run failed:"; sed 's/^/  /' "$OUT/$name-verify.txt"
    fi
    echo "arm64 $name ($version, emulated $QEMU_CPU): $(arm "$site" -m edgecnn devices --detect | head -1)"
    echo "arm64 $name: verify --run${trust[*]:+ --trust-key}: $(grep -c "self-check passed" "$OUT/$name-verify.txt" || true)" \
        "self-check(s) passed, $(grep -c 'skipped the self-check' "$OUT/$name-verify.txt" || true) skipped (runtime not installed)"
    for a in "$@"; do
        for v in ffv1.mkv mjpg.avi; do
            if arm "$site" -m edgecnn classify "$ART/$a" --device rpi4 --source "file:$WORK/x86/heldout-$v" \
                --sink "jsonl:$OUT/$name-$a-$v.jsonl" "${trust[@]}" >"$OUT/$name-$a-$v.log" 2>&1; then
                compare "$name" "$a" "$v"
            else
                checks_failed=1; echo "arm64 $name: classify $a failed: $(tail -2 "$OUT/$name-$a-$v.log")"
            fi
        done
    done
}
rm -f "$OUT"/*.jsonl
T0=$(date +%s)
run_pass litert "$WORK/site-litert" tflite-int8 tflite-dynamic tflite-fp32
if arm "$WORK/site-litert" -m edgecnn profile "$ART" --device rpi4 --runs 50 --min-seconds 0 --json >"$OUT/profile.json" 2>"$OUT/profile.log"; then
    echo "arm64 litert: $($X86 tools/arm64_helpers.py profile "$OUT/profile.json")"
else
    checks_failed=1; echo "arm64: profile failed: $(tail -2 "$OUT/profile.log")"
fi
# the emulated Pi as a board over SSH (#19): a real sshd on loopback, the board's edgecnn the aarch64 Python, driven
# by x86's edgecnn profile/verify --on (skipped, with its reason, without openssh-server)
if ! $X86 tools/arm64_helpers.py ssh "$WORK" "$ART" "$WORK/site-litert" "$ROOT" 2>"$OUT/ssh.log"; then
    checks_failed=1; tail -3 "$OUT/ssh.log"
fi
# ---- #26: `edgecnn board install --offline` onto the bare emulated Pi over SSH (its pip reaches no index: only the
# aarch64 wheelhouse built here can work), again (nothing to install, nothing copied), then `profile --on` with no
# --remote-edgecnn (skipped, with its reason, without openssh-server)
if ! $X86 tools/arm64_helpers.py board_install "$WORK" "$ROOT" 2>"$OUT/board-install.log"; then
    checks_failed=1; tail -3 "$OUT/board-install.log"
fi
# ---- end of #26's block
run_pass tflite-runtime-2.14 "$WORK/site-tflite214" tflite-int8 tflite-dynamic tflite-fp32
SECONDS_TAKEN=$(( $(date +%s) - T0 ))
# the decoders compared directly: which pixel values differ between aarch64's and x86's decoding of each video
for v in ffv1.mkv mjpg.avi; do
    arm "$WORK/site-litert" tools/arm64_helpers.py decode "$WORK/x86/heldout-$v" "$OUT/arm-$v.npy"
    $X86 tools/arm64_helpers.py decode "$WORK/x86/heldout-$v" "$OUT/x86-$v.npy"
    echo "arm64: the ${v%%.*} video decoded on aarch64 and on x86: $($X86 tools/arm64_helpers.py pixels "$OUT/arm-$v.npy" "$OUT/x86-$v.npy")"
done
read -r lossless_agree lossless_total mjpg_agree mjpg_total mjpg_near < <(awk -F'\t' '
    $3 == "ffv1.mkv" {la += $4; lt += $5} $3 == "mjpg.avi" {ma += $4; mt += $5; mn += $6}
    END {print la + 0, lt + 0, ma + 0, mt + 0, mn + 0}' "$OUT/agreement.tsv")
ok=0
if [ "$checks_failed" = 0 ] && [ "$lossless_total" -gt 0 ] && [ "$lossless_agree" = "$lossless_total" ] \
    && [ $((mjpg_total - mjpg_agree)) = "$mjpg_near" ]; then
    ok=1
fi
echo "arm64: top-1 agreement $lossless_agree/$lossless_total with x86 (lossless video, 3 TFLite artifacts, ai-edge-litert and" \
     "tflite-runtime 2.14; MJPEG video $mjpg_agree/$mjpg_total, $mjpg_near near-tie flip(s) from its decoder; self-checks" \
     "$([ "$checks_failed" = 0 ] && echo passed || echo FAILED); emulated $QEMU_CPU, ${SECONDS_TAKEN} s)"
[ "$ok" = 1 ]
