# shellcheck shell=bash
# Free ports for a cluster, sourced by the scripts that start clusters (deploy/bench/*.sh,
# deploy/soak.sh). A cluster binds network.base_port and the 39 ports above it.

# port_free P: true when nothing listens on any of the ports P to P+39.
port_free() {
    local p=$1 i
    for ((i = 0; i < 40; i++)); do
        if ss -Htln "sport = :$((p + i))" 2>/dev/null | grep -q .; then
            return 1
        fi
    done
    return 0
}

# pick_port [FIRST [END]]: print the first free base port of FIRST (default 17200),
# FIRST+50, ... below END (default 30000); false when there is none.
pick_port() {
    local p
    for ((p = ${1:-17200}; p < ${2:-30000}; p += 50)); do
        if port_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
