#!/usr/bin/env bash
# Build the image from ./Dockerfile in a clean, throw-away podman store and test it (README, "On a
# GPU cluster"):
#   1. a stand-in for python:3.11-slim-bookworm: mmdebstrap of Debian bookworm (minbase, python3, pip,
#      venv) from this machine's apt sources and options, with its CA certificates and pip and npm
#      configuration, so that the build reaches the same package registries;
#   2. `podman build` of the unmodified Dockerfile (--build-arg FLAVOUR=cpu, or gpu with --gpu);
#   3. in the image, network off: Ray's version is the manifest's rayVersion, `mupc-sweep --help`,
#      both datasets in the image and verified, and a tiny sweep run as a non-root user into a
#      mounted results directory, whose records are read back here (owner, permissions, contents);
#   4. a RayCluster as KubeRay v1.5.1 would start it from deploy/raycluster.yaml (deploy/kuberay.py):
#      token authentication, the head's and a worker's `ray start` commands, the wait-gcs-ready
#      check and the health probes, then `mupc-sweep run --address auto` in the head and the
#      records copied out (kubectl cp's part), all in one container, network off.
# Everything it makes (images, containers, the store, the base tarball) is removed on exit; a run
# killed before that is cleaned up by the next. Needs root and apt-get (it installs podman, runc and
# mmdebstrap if missing), the package registries, and the repository's .venv (`make setup`).
#
#   bash deploy/test_image.sh          # the CPU flavour (CI)
#   bash deploy/test_image.sh --gpu    # the GPU flavour: jax[cuda12], run on the CPU here
#
# MUPC_IMAGE_TEST_DIR (default /var/tmp/mupc-sweep-image-test) holds its work while it runs.
{ # bash reads this whole block before running it: editing the file during a run does not change the run
set -Eeuo pipefail

FLAVOUR=cpu
case "${1:-}" in
  "") ;;
  --gpu) FLAVOUR=gpu ;;
  --cpu) FLAVOUR=cpu ;;
  -h|--help) sed -n '2,/^{ # bash/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "test_image.sh: unknown argument '$1' (use --gpu, --cpu or --help)" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${MUPC_IMAGE_TEST_DIR:-/var/tmp/mupc-sweep-image-test}
MARK=.mupc-sweep-image-test
BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
IMAGE=localhost/mupc-sweep-image-test:$FLAVOUR
USER_ID=4242   # the "user" whose results directory the sweep writes into
PY=$REPO/.venv/bin/python
START=$SECONDS
declare -a TIMES=()

PASSED=0
die() { echo "test_image.sh: $*" >&2; exit 1; }
say() { printf '[%4ds] %s\n' $((SECONDS - START)) "$*"; }
ok() { PASSED=$((PASSED + 1)); say "   ok: $*"; }
timed() {  # timed NAME COMMAND...: run it, note its seconds
  local name=$1 t0=$SECONDS; shift
  "$@"
  TIMES+=("$name=$((SECONDS - t0))")
}
summary() {
  local item
  echo "== timings ($FLAVOUR flavour)"
  for item in "${TIMES[@]}"; do printf '   %-28s %5ss\n' "${item%%=*}" "${item#*=}"; done
  printf '   %-28s %5ss\n' total $((SECONDS - START))
}

# --- what it needs -------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (rootful podman, mmdebstrap, apt-get); nothing was done"
[ -x "$PY" ] || die "no $PY: run \`make setup\` first (the records are read back with the package); nothing was done"
tools_work() { podman --version && runc --version && mmdebstrap --version; } >/dev/null 2>&1
if ! tools_work; then
  command -v apt-get >/dev/null 2>&1 || die "podman, runc or mmdebstrap is missing and cannot be installed: no apt-get"
  say "installing podman, runc and mmdebstrap with apt-get"
  apt_log=$(mktemp)
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman runc mmdebstrap \
         || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
              podman runc mmdebstrap; }; } >"$apt_log" 2>&1 || ! tools_work; then
    reason=$(grep -E '^(E|W): ' "$apt_log" | tail -n 1); rm -f "$apt_log"
    die "podman, runc or mmdebstrap cannot be installed (apt-get failed: ${reason:-no message}); the image was not tested"
  fi
  rm -f "$apt_log"
fi

exec 9>"/run/lock/mupc-sweep-image-test.lock"
flock -n 9 || die "another deploy/test_image.sh is running (it holds /run/lock/mupc-sweep-image-test.lock)"

# --- a store of its own, removed on exit -----------------------------------------------------------
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf TMPDIR=$WORK/tmp
pm() { podman --tmpdir "$WORK/libpod" "$@"; }

wipe() {  # remove what a run (this one, or one killed earlier) left in $WORK
  [ -e "$WORK" ] || return 0
  if [ ! -e "$WORK/$MARK" ] && [ -n "$(ls -A "$WORK")" ]; then
    die "$WORK exists and is not this script's: set MUPC_IMAGE_TEST_DIR to another folder"
  fi
  if [ -f "$WORK/storage.conf" ]; then
    pm rm --all --force --time 0 >/dev/null 2>&1 || true
    pm rmi --all --force >/dev/null 2>&1 || true
  fi
  local mount
  findmnt -rn -o TARGET | awk -v w="$WORK/" 'index($0, w) == 1' | sort -r | while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" || true
  done
  rm -rf --one-file-system "$WORK"
}
on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  wipe || rc=1
  [ ${#TIMES[@]} -gt 0 ] && summary
  if [ $rc = 0 ]; then echo "test_image.sh: the $FLAVOUR image passed; its images, containers and store are removed"
  else echo "test_image.sh: FAILED (exit $rc); its images, containers and store are removed" >&2; fi
  echo "test_image: $PASSED passed, $((rc == 0 ? 0 : 1)) failed"
  exit $rc
}
wipe
trap on_exit EXIT
trap 'echo "test_image.sh: line $LINENO failed: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM
mkdir -p "$WORK"/{tmp,libpod,spec,results} && touch "$WORK/$MARK" && chmod 755 "$WORK"

# overlay where the kernel mounts it on this filesystem, else vfs (slower, bigger)
mkdir -p "$WORK/ovl"/{lower,upper,work,merged}
if mount -t overlay overlay -o "lowerdir=$WORK/ovl/lower,upperdir=$WORK/ovl/upper,workdir=$WORK/ovl/work" \
     "$WORK/ovl/merged" 2>/dev/null; then
  umount "$WORK/ovl/merged"; DRIVER=overlay
else
  DRIVER=vfs
fi
rm -rf "$WORK/ovl"
cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
# runc: crun refuses hybrid cgroup layouts ("cgroups in hybrid mode not supported"). Podman asks for
# 1,048,576 open files, refused where this shell's hard limit is lower (20,000 on the CI machine).
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
NPROC=$(ulimit -Hu); { [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; } && NPROC=32768
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
say "podman $(podman --version | awk '{print $3}'), runc, storage driver $DRIVER, store under $WORK"

# --- 1. the stand-in base image --------------------------------------------------------------------
base_image() {
  local sources=() aptopts=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ] && grep -qE '^[[:space:]]*(deb|URIs:)' "$f"; then sources+=("$f"); fi
  done
  [ ${#sources[@]} -gt 0 ] || die "no apt sources on this machine to build the base image from"
  for f in /etc/apt/apt.conf.d/*; do  # this machine's apt options, but not its hooks
    if [ -f "$f" ] && ! grep -qiE 'Invoke|Pre-Install-Pkgs|Hook' "$f"; then aptopts+=(--aptopt="$f"); fi
  done
  cat >"$WORK/customize.sh" <<'EOF'
#!/bin/sh
# what python:3.11-slim-bookworm has (python and pip in /usr/local/bin, pip installs as root) and this
# machine's CA certificates and pip and npm configuration
set -e
root=$1
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
for f in /etc/pip.conf /etc/xdg/pip /etc/npmrc /usr/etc/npmrc; do
  if [ -e "$f" ]; then mkdir -p "$root$(dirname "$f")"; cp -a "$f" "$root$(dirname "$f")/"; fi
done
EOF
  chmod +x "$WORK/customize.sh"
  mmdebstrap --quiet --variant=minbase --format=tar \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,netbase \
    "${aptopts[@]}" --customize-hook="$WORK/customize.sh" \
    bookworm "$WORK/base.tar" "${sources[@]}"
  pm import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/base.tar"
}
say "1. base image: mmdebstrap of bookworm, imported as $BASE_IMAGE"
timed "base image (mmdebstrap)" base_image

# --- 2. the build ----------------------------------------------------------------------------------
build() {
  if ! pm build --pull=never --network host --build-arg "FLAVOUR=$FLAVOUR" -t "$IMAGE" -f "$REPO/Dockerfile" \
       "$REPO" >"$WORK/build.log" 2>&1; then
    tail -n 60 "$WORK/build.log" >&2
    die "the image did not build (the last 60 lines of its log are above)"
  fi
  grep -E '(^|\] )(STEP|COMMIT)' "$WORK/build.log" | sed 's/^/   /' || true
}
say "2. podman build --build-arg FLAVOUR=$FLAVOUR (the repository's Dockerfile, from nothing)"
timed "build" build
SIZE=$(pm image inspect --format '{{.Size}}' "$IMAGE")
say "image $IMAGE: $(numfmt --to=si --suffix=B "$SIZE") ($SIZE bytes)"
pm history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110 | head -n 12 | sed 's/^/   /'

# --- 3. the image, network off ---------------------------------------------------------------------
in_image() { pm run --rm --network none "$@"; }
check_image() {
  local want got help data
  want=$(sed -n 's/^[[:space:]]*rayVersion:[[:space:]]*"\{0,1\}\([0-9.]*\)"\{0,1\}.*/\1/p' "$REPO/deploy/raycluster.yaml")
  got=$(in_image "$IMAGE" python -c 'import jax, ray, sys; print(ray.__version__, jax.__version__, sys.version.split()[0])')
  [ "${got%% *}" = "$want" ] || die "the image has Ray ${got%% *}, deploy/raycluster.yaml names rayVersion $want"
  ok "Ray ${got%% *} in the image, the manifest's rayVersion (jax, python: ${got#* })"

  help=$(in_image "$IMAGE")  # the image's CMD: mupc-sweep --help
  grep -q 'Usage: mupc-sweep' <<<"$help" && grep -qw run <<<"$help" \
    || die "the image's default command did not print mupc-sweep's help: $help"
  ok "mupc-sweep --help (the image's default command)"

  data=$(in_image "$IMAGE" mupc-sweep data fetch mnist fashion_mnist) \
    || die "the datasets in the image did not verify (network off, so nothing could be fetched): $data"
  grep -qx 'mnist: verified (/datasets/mnist)' <<<"$data" \
    && grep -qx 'fashion_mnist: verified (/datasets/fashion_mnist)' <<<"$data" \
    || die "the datasets are not in the image's cache /datasets: $data"
  ok "datasets, network off: $(tr '\n' ';' <<<"$data")"
  in_image "$IMAGE" sh -c 'ls -ln /datasets/*' | sed 's/^/      /'
}

# A sweep of 2 cells and 8 points, seconds of training.
cat >"$WORK/spec/tiny.yaml" <<'EOF'
name: tiny
dataset: mnist
network: {activation: tanh, param: mupc, algorithm: pc, width: 16, depth: [1, 2]}
training: {batch_size: 32, epochs: 0.02, eval_every: 20, seeds: [0]}
grid: {eta: [0.1, 0.01], beta: [10, 1]}
curves_every: 5
resources: {cpu: 1, gpu: 0}
EOF

check_records() {  # check_records DIR: the tiny sweep's records in DIR, owned and usable by USER_ID
  local dir=$1 files bad
  files=$(find "$dir/tiny/records" -name '*.parquet' | wc -l)
  [ "$files" -ge 1 ] || die "no records under $dir/tiny/records"
  bad=$(find "$dir/tiny" \( ! -uid $USER_ID -o ! -gid $USER_ID \) -printf '%u:%g %p\n' | head -n 5)
  [ -z "$bad" ] || die "files not owned by the user that ran the sweep ($USER_ID:$USER_ID): $bad"
  bad=$(setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups \
        find "$dir/tiny" \( ! -readable -o ! -writable -o \( -type d ! -executable \) \) -printf '%m %p\n' | head -n 5)
  [ -z "$bad" ] || die "files their owner cannot read or change: $bad"
  "$PY" - "$dir" <<'EOF' || die "the records read back here are not the tiny sweep's 8 points"
import sys
import mupc_sweep
from mupc_sweep.store import left_out
records = mupc_sweep.load_records(sys.argv[1], "tiny")
assert len(records) == 8 and not left_out(sys.argv[1], "tiny"), (len(records), left_out(sys.argv[1], "tiny"))
assert set(records["depth"]) == {1, 2} and records["min_train_loss"].notna().all(), records
print(f"      read back here: {len(records)} points, {sorted(set(records['status']))}, "
      f"min_train_loss {records['min_train_loss'].min():.4g}–{records['min_train_loss'].max():.4g}")
EOF
  ok "$files record files, owned by $USER_ID:$USER_ID, readable and writable by it, read back here"
}

sweep_embedded() {
  chown $USER_ID:$USER_ID "$WORK/results"
  in_image --user $USER_ID:$USER_ID --shm-size 1g -v "$WORK/spec:/spec:ro" -v "$WORK/results:/app/results" \
    "$IMAGE" mupc-sweep run /spec/tiny.yaml 2>&1 | tail -n 4 | sed 's/^/      /'
  check_records "$WORK/results"
}

# --- 4. a RayCluster as KubeRay v1.5.1 starts it ---------------------------------------------------
cluster() {
  local token head worker c=mupc-sweep-image-test-cluster
  token=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  # both nodes in one network namespace, so the worker's ports move; its CPUs and GPUs are this
  # machine's (2 CPUs, none) rather than the manifest's 8 and 1
  head=$("$PY" "$REPO/deploy/kuberay.py" start "$REPO/deploy/raycluster.yaml" head)
  worker=$("$PY" "$REPO/deploy/kuberay.py" start "$REPO/deploy/raycluster.yaml" gpu --address 127.0.0.1:6379 \
           --set num-cpus=2 --set num-gpus=0 --set memory=4000000000 \
           --set dashboard-agent-listen-port=52366 --set metrics-export-port=8081)
  say "   head:   $head"
  say "   worker: $worker"
  # the head pod: the Ray container's command and the token KubeRay puts in its environment (its
  # `ulimit -n 65536` fails where the hard limit is lower, as here, and ray start goes on, as in a pod)
  pm run -d --name $c --network none --user $USER_ID:$USER_ID --shm-size 1g \
    -e RAY_AUTH_MODE=token -e RAY_AUTH_TOKEN="$token" -v "$WORK/spec:/spec:ro" \
    "$IMAGE" /bin/bash -c -- "$head" >/dev/null
  pm exec $c /bin/bash -c -- "$("$PY" "$REPO/deploy/kuberay.py" wait-gcs 127.0.0.1:6379)" >/dev/null \
    || { pm logs $c | tail -n 30 >&2; die "the head's GCS did not come up"; }
  ok "the head is up (wait-gcs-ready's ray health-check, with the token)"
  pm exec -d $c /bin/bash -c -- "$worker" >/dev/null
  local probe_head probe_worker ok=""
  probe_head=$("$PY" "$REPO/deploy/kuberay.py" probe head)
  probe_worker=$("$PY" "$REPO/deploy/kuberay.py" probe worker --agent-port 52366)
  for _ in $(seq 60); do
    if pm exec $c /bin/bash -c "$probe_head" >/dev/null 2>&1 && pm exec $c /bin/bash -c "$probe_worker" >/dev/null 2>&1
    then ok=1; break; fi
    sleep 2
  done
  if [ -z "$ok" ]; then
    pm exec $c /bin/bash -c "set -x; $probe_head; $probe_worker" >&2 || true
    die "KubeRay's health probes did not pass within 120 s (the probes' last try is above)"
  fi
  ok "KubeRay's liveness/readiness probes pass on the head and the worker"
  # the driver without the token is refused
  local refused
  if refused=$(pm exec $c env -u RAY_AUTH_TOKEN -u RAY_AUTH_MODE timeout 60 ray status --address 127.0.0.1:6379 2>&1)
  then die "the cluster let in a client without its token"; fi
  refused=$(grep -iE -m 1 'auth|token' <<<"$refused") || die "a client without the token failed, but not for want of it"
  ok "a client without the token is refused: ${refused:0:120}"
  # kubectl exec HEAD -- mupc-sweep run ... --address auto
  pm exec $c mupc-sweep run /spec/tiny.yaml --address auto 2>&1 | tail -n 4 | sed 's/^/      /'
  # kubectl cp HEAD:/app/results ./results (which runs tar in the container), as user USER_ID here
  mkdir "$WORK/copied" && chown $USER_ID:$USER_ID "$WORK/copied"
  pm exec $c tar cf - -C /app/results tiny \
    | setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups tar xf - -C "$WORK/copied"
  check_records "$WORK/copied"
  pm rm --force --time 5 $c >/dev/null
}

say "3. the image, network off"
timed "checks: version, help, data" check_image
say "   a sweep with embedded Ray, as user $USER_ID, into a mounted results directory"
timed "tiny sweep (embedded Ray)" sweep_embedded
say "4. a RayCluster as KubeRay v1.5.1 starts it from deploy/raycluster.yaml, token on, network off"
timed "tiny sweep (KubeRay-like)" cluster
exit 0
}
