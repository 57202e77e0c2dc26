# Sourced by the scripts that install pinned Python tools into a project-local virtualenv
# (moto.sh, sam.sh, schemathesis.sh, load.sh); they define PYTHON, log and die first.

# make_venv VENV: create the virtualenv VENV with $PYTHON unless it is there. Debian's python3
# ships venv/ensurepip apart (python3-venv): installed with apt-get when running as root.
make_venv() {
    local venv=$1
    [[ -x "${venv}/bin/python" ]] && return 0
    log "creating ${venv##*/} with $(command -v "${PYTHON}" || echo "${PYTHON}")"
    "${PYTHON}" -m venv "${venv}" && return 0
    rm -rf "${venv}"
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        log "python3 -m venv failed; installing python3-venv"
        apt-get install -y -q python3-venv >&2 || { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
        "${PYTHON}" -m venv "${venv}" || die "python3 -m venv failed after installing python3-venv"
    else
        die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
}

# pip_install_pinned VENV SPEC BIN: install the pinned SPEC into VENV unless its stamp
# (`VENV/.stamp`) already names it, and check that VENV/bin/BIN came with it.
pip_install_pinned() {
    local venv=$1 spec=$2 bin=$3
    if [[ -x "${venv}/bin/${bin}" && -f "${venv}/.stamp" && "$(cat "${venv}/.stamp")" == "${spec}" ]]; then
        log "${spec} already installed in ${venv##*/}"
        return 0
    fi
    make_venv "${venv}"
    log "installing ${spec}"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "${spec}" >&2
    [[ -x "${venv}/bin/${bin}" ]] || die "${bin} missing after install"
    echo "${spec}" >"${venv}/.stamp"
}
