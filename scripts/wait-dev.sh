# Sourced by the measurement scripts. wait_dev LOG: waits until the `tessera dev` writing LOG
# has started every region (its "Stop with Ctrl-C" line), or exits the script after 60 s.
wait_dev() {
  for _ in $(seq 600); do
    grep -q "Stop with Ctrl-C" "$1" 2>/dev/null && return
    sleep 0.1
  done
  echo "tessera dev did not start: $(tail "$1")" >&2
  exit 1
}
