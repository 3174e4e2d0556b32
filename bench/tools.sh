# Sourced by the bench scripts: installs the commands given (Debian packages; oha from
# crates.io) when they are missing.
need_tools() {
    local packages=() tool
    for tool in "$@"; do
        [ "$tool" = oha ] && continue
        command -v "$tool" >/dev/null || packages+=("$tool")
    done
    if ((${#packages[@]})); then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        packages=("${packages[@]/taskset/util-linux}")
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    if [[ " $* " == *" oha "* ]]; then
        command -v oha >/dev/null || cargo install --locked oha
    fi
}
