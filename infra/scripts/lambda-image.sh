#!/usr/bin/env bash
# The Lambda emulation base image for `sam local`, built from this machine's own files: no
# container registry is reachable here, so public.ecr.aws/lambda/provided:al2023 cannot be
# pulled. What a provided.al2023 function needs from its image is small: glibc (the binaries
# are dynamically linked against it), libgcc_s, CA certificates, /tmp, /var/task. SAM itself
# adds the runtime interface emulator (aws-lambda-rie, shipped in the aws-sam-cli package,
# samcli/local/rapid/) on top with `FROM <this image>` + `ADD` + `RUN mv ... && chmod ...`,
# so the image also carries a shell, mv and chmod (the host's, with their libraries).
#
#   infra/scripts/lambda-image.sh build [ARCH]   build twofa-lambda-provided:al2023-ARCH if it is
#                                                missing or its inputs changed (idempotent)
#   infra/scripts/lambda-image.sh name [ARCH]    print the image name (for sam --invoke-image)
#   infra/scripts/lambda-image.sh remove [ARCH]  remove it and the rapid image SAM made from it
#
# The root filesystem is assembled in .run/lambda-image/rootfs (files copied at their host
# paths, so the host's dynamic loader finds them) and turned into an image by `docker import`
# (no builder, no base image). Only the host's architecture can be built: its files are the
# image's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
REPO=twofa-lambda-provided

host_arch() {
    case "$(uname -m)" in
        x86_64) echo x86_64 ;;
        aarch64 | arm64) echo arm64 ;;
        *) uname -m ;;
    esac
}
ARCH="${2:-${ARCH:-$(host_arch)}}"
IMAGE="${REPO}:al2023-${ARCH}"
# SAM tags the image it builds on ours <repo>:rapid-<arch> (samcli/local/docker/lambda_image.py).
RAPID="${REPO}:rapid-${ARCH}"
WORK="${ROOT}/.run/lambda-image"

log() { printf '[lambda-image] %s\n' "$*" >&2; }
# ldconfig lives in /sbin, which a user's PATH may not hold.
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
die() { printf '[lambda-image] ERROR: %s\n' "$*" >&2; exit 1; }

# Programs SAM's Dockerfile runs, and the libraries a Rust binary built for *-linux-gnu links.
PROGRAMS=(/bin/sh /bin/mv /bin/chmod)
LIBS=(libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2
    libnss_files.so.2 libnss_dns.so.2)

# Every file the image holds, at its host path (symlinks resolved by cp -L).
files() {
    local p lib path
    for p in "${PROGRAMS[@]}"; do
        echo "$p"
        ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
    done
    # The cache read once and searched whole: an awk that stopped at its match could end
    # ldconfig with SIGPIPE on a machine with a large cache, and pipefail would then drop the
    # rest of the list without a word.
    local cache
    cache=$("$LDCONFIG" -p)
    for lib in "${LIBS[@]}"; do
        path=$(awk -v l="$lib" '$1 == l && /x86-64|AArch64|aarch64/ && !found { print $NF; found = 1 }' <<<"$cache")
        [[ -n "$path" ]] || die "$lib is not in the loader cache ($LDCONFIG -p)"
        echo "$path"
    done
    for path in /etc/ssl/certs/ca-certificates.crt; do
        [[ -f "$path" ]] && echo "$path"
    done
}

check() {
    [[ "$ARCH" == "$(host_arch)" ]] || die "ARCH=$ARCH: this image is made of the host's own files, which are $(host_arch); a $ARCH emulation image needs a $ARCH machine (or a registry to pull public.ecr.aws/lambda/provided:al2023-$ARCH from)"
    command -v docker >/dev/null || die "docker is not installed (Debian: apt-get install docker.io)"
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running? docker info says: $(docker info 2>&1 | tail -1))"
    command -v ldd >/dev/null && [[ -x "$LDCONFIG" ]] || die "ldd/ldconfig missing (libc-bin)"
}

inputs_hash() {
    {
        files | sort -u | xargs sha256sum
        sed -n '/^files()/,/^}/p; /^assemble()/,/^}/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
}

assemble() {
    local rootfs=$1 f
    rm -rf "$rootfs"
    mkdir -p "$rootfs"/{tmp,var/task,var/runtime,var/rapid,opt,etc/pki/tls/certs,proc,sys,dev,root}
    chmod 1777 "$rootfs/tmp"
    local list
    list=$(files | sort -u)
    while read -r f; do
        cp -L --parents "$f" "$rootfs/"
    done <<<"$list"
    # The loader the binaries name (PT_INTERP), and the symlinks the sonames are looked up by.
    for f in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do
        [[ -e "$f" ]] && cp -L --parents "$f" "$rootfs/"
    done
    # Amazon Linux's bundle path, for programs that look there.
    cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/pki/tls/certs/ca-bundle.crt"
    printf 'root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nsbx_user1051:x:990:\n' >"$rootfs/etc/group"
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    : >"$rootfs/etc/hosts"
    : >"$rootfs/etc/resolv.conf"
}

cmd_build() {
    check
    local hash current start=$SECONDS
    hash=$(inputs_hash)
    current=$(docker image inspect -f '{{ index .Config.Labels "twofa.inputs" }}' "$IMAGE" 2>/dev/null || true)
    if [[ "$current" == "$hash" ]]; then
        log "$IMAGE is up to date (inputs $hash)"
        return 0
    fi
    log "building $IMAGE from the host's files (inputs $hash)"
    mkdir -p "$WORK"
    assemble "$WORK/rootfs"
    # An old rapid image was built on the old base: SAM only builds one when it is missing.
    docker image rm -f "$RAPID" >/dev/null 2>&1 || true
    tar --numeric-owner -C "$WORK/rootfs" -c . | docker import \
        --change "ENV PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin" \
        --change "ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib" \
        --change "ENV LAMBDA_TASK_ROOT=/var/task" \
        --change "ENV LAMBDA_RUNTIME_DIR=/var/runtime" \
        --change "ENV TZ=:UTC" \
        --change "ENV SSL_CERT_FILE=/etc/pki/tls/certs/ca-bundle.crt" \
        --change "WORKDIR /var/task" \
        --change "LABEL twofa.inputs=$hash" \
        --change "ENTRYPOINT [\"/var/rapid/aws-lambda-rie\"]" \
        - "$IMAGE" >/dev/null
    log "built $IMAGE in $((SECONDS - start)) s ($(du -sh "$WORK/rootfs" | cut -f1) of files)"
    rm -rf "$WORK/rootfs"
}

cmd_remove() {
    docker image rm -f "$RAPID" "$IMAGE" 2>/dev/null || true
}

case "${1:-}" in
    build) cmd_build ;;
    name) echo "$IMAGE" ;;
    remove) cmd_remove ;;
    *)
        echo "usage: $0 {build|name|remove} [x86_64|arm64]" >&2
        exit 2
        ;;
esac
