# Shared by the launch/ scripts: system packages, mpirun flags, build folder.
# Sourced, not run.

# Debian packages the build and the tests need.
SORTEDTRAIN_PACKAGES=(pkg-config libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools python3 curl)

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
# to one core), and OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS, oneDNN's bf16 GEMMs) so ranks
# do not fight over the cores.
# SORTEDTRAIN_PROGRESS tells the ranks what this stdout is (Open MPI gives each rank a
# pseudo-terminal, so they cannot see it): "bar" on an interactive terminal, "lines" into
# a file, a pipe or tee. A value already in the environment is kept. MPIRUN: another mpirun.
mpirun_local() {
    local np=$1; shift
    local cores; cores=$(nproc)
    local flags=(-np "$np" --bind-to none)
    [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
    [ "$np" -gt "$cores" ] && flags+=(--oversubscribe)
    local threads=$(( cores / np )); [ "$threads" -lt 1 ] && threads=1
    local progress=lines
    [ -t 1 ] && [ -n "${TERM:-}" ] && [ "$TERM" != dumb ] && progress=bar
    local blas=${OPENBLAS_NUM_THREADS:-$threads}
    OPENBLAS_NUM_THREADS=$blas OMP_NUM_THREADS=${OMP_NUM_THREADS:-$blas} SORTEDTRAIN_PROGRESS=${SORTEDTRAIN_PROGRESS:-$progress} \
        "${MPIRUN:-mpirun}" "${flags[@]}" -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x SORTEDTRAIN_PROGRESS ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} "$@"
}

# mpirun over the hosts of a hostfile: mpirun_hosts HOSTFILE NP [mpirun options…] COMMAND…
# - A host that stops answering ends the job: mpirun and its daemons hear about a lost host
#   only when their TCP connection to it fails. With Open MPI's keepalive defaults (300 s
#   idle, then 9 probes 20 s apart) an idle one fails after 8 minutes, and one holding
#   unacknowledged data (an abort mpirun sends there) only after the system's ~15 minutes of
#   retransmissions. Probes after 5 s idle, 3 of them 2 s apart (at most 11 s), make mpirun
#   end the job and a cut-off host's daemon kill its own ranks; the ranks do not abort while
#   a whole host is silent, so mpirun sends nothing there first (see TrainCommand).
# - SORTEDTRAIN_NETWORK (a CIDR like 10.0.0.0/24, or interface names): TCP only, over that
#   network, for both MPI traffic (btl_tcp_if_include) and mpirun's own (oob_tcp_if_include);
#   pml ob1, since Debian's Open MPI prefers UCX's pml when libucx is installed, and UCX
#   ignores the btl settings. SORTEDTRAIN_BTL: the transports (default tcp,vader,self;
#   vader is shared memory between ranks of one host). Unset: Open MPI chooses (InfiniBand…).
# - MPIRUN: another mpirun (the multi-host tests run it under another name).
# - OPENBLAS_NUM_THREADS: threads per rank, 1 unless set (set it to cores per rank).
SORTEDTRAIN_LOST_HOST_MCA=(--mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3)
mpirun_hosts() {
    local hostfile=$1 np=$2; shift 2
    local flags=(--hostfile "$hostfile" -np "$np" --bind-to none)
    [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
    flags+=("${SORTEDTRAIN_LOST_HOST_MCA[@]}")
    if [ -n "${SORTEDTRAIN_NETWORK:-}" ]; then
        flags+=(--mca pml ob1 --mca btl "${SORTEDTRAIN_BTL:-tcp,vader,self}"
                --mca btl_tcp_if_include "$SORTEDTRAIN_NETWORK" --mca oob_tcp_if_include "$SORTEDTRAIN_NETWORK")
    fi
    local progress=lines
    [ -t 1 ] && [ -n "${TERM:-}" ] && [ "$TERM" != dumb ] && progress=bar
    local blas=${OPENBLAS_NUM_THREADS:-1}
    OPENBLAS_NUM_THREADS=$blas OMP_NUM_THREADS=${OMP_NUM_THREADS:-$blas} SORTEDTRAIN_PROGRESS=${SORTEDTRAIN_PROGRESS:-$progress} \
        "${MPIRUN:-mpirun}" "${flags[@]}" -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x SORTEDTRAIN_PROGRESS ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE} "$@"
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
