# Shared by the launch/ scripts: system packages, mpirun flags, build folder.
# Sourced, not run.

# Debian packages the build and the tests need.
SORTEDTRAIN_PACKAGES=(pkg-config libopenblas-dev libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools python3 curl)

# Installs the packages that are missing (apt-get, only when something is missing).
ensure_packages() {
    local missing=()
    for p in "${SORTEDTRAIN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "launch: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! command -v swift >/dev/null 2>&1; then
        for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
    fi
    command -v swift >/dev/null 2>&1 || { echo "launch: the Swift toolchain (swift) is not on PATH; install Swift 6 first" >&2; exit 1; }
}

# mpirun with the flags this machine needs for `np` ranks: --allow-run-as-root as root,
# --oversubscribe when ranks exceed cores, --bind-to none (one rank must not be pinned
# to one core), and OPENBLAS_NUM_THREADS so ranks do not fight over the cores.
# SORTEDTRAIN_PROGRESS tells the ranks what this stdout is (Open MPI gives each rank a
# pseudo-terminal, so they cannot see it): "bar" on an interactive terminal, "lines" into
# a file, a pipe or tee. A value already in the environment is kept.
mpirun_local() {
    local np=$1; shift
    local cores; cores=$(nproc)
    local flags=(-np "$np" --bind-to none)
    [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
    [ "$np" -gt "$cores" ] && flags+=(--oversubscribe)
    local threads=$(( cores / np )); [ "$threads" -lt 1 ] && threads=1
    local progress=lines
    [ -t 1 ] && [ -n "${TERM:-}" ] && [ "$TERM" != dumb ] && progress=bar
    OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$threads} SORTEDTRAIN_PROGRESS=${SORTEDTRAIN_PROGRESS:-$progress} \
        mpirun "${flags[@]}" -x OPENBLAS_NUM_THREADS -x SORTEDTRAIN_PROGRESS ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} "$@"
}

# Debian 12's OpenBLAS (0.3.21) does not recognise CPUs newer than itself (Sapphire Rapids
# among them) and falls back to its generic Prescott (SSE3) kernels: the demo trains 3× slower
# there. The runs the launch scripts start prefer the fastest kernels the CPU runs instead:
# SkylakeX's AVX-512 ones (about 2× Haswell's sgemm on such a CPU), else Haswell's AVX2 and
# FMA ones. The tests keep the machine's own choice, and an OPENBLAS_CORETYPE the user set
# is kept.
prefer_fast_openblas() {  # $1: the sortedtrain binary
    [ -z "${OPENBLAS_CORETYPE:-}" ] || return 0
    grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null || return 0
    [ "$(OPENBLAS_VERBOSE=2 "$1" help 2>&1 | sed -n 's/^Core: //p' | head -1)" = Prescott ] || return 0
    local kernel=Haswell isa="AVX2"
    if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512dq /proc/cpuinfo \
        && grep -qw avx512vl /proc/cpuinfo; then
        kernel=SkylakeX isa="AVX-512"
    fi
    export OPENBLAS_CORETYPE=$kernel
    echo "launch: OpenBLAS chose its generic Prescott kernel for this CPU; using its $isa kernels instead (OPENBLAS_CORETYPE=$kernel)" >&2
}
