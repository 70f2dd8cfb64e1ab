#!/bin/sh
# STAND-IN for the official GitHub Actions runner's run.sh, for Hearth's tests
# only: production images run the real runner. It speaks to the forge
# simulator's callback instead of GitHub's broker. Guests have busybox only,
# so: sh, wget (no -T, it crashes busybox-static; `timeout` instead), base64, sed.
set -u

say() { echo "run.sh stand-in: $*"; }
fail() { echo "run.sh stand-in: $*" >&2; exit 1; }

config=''
while [ $# -gt 0 ]; do
  case "$1" in
    --jitconfig)
      [ $# -ge 2 ] || { echo 'usage: run.sh --jitconfig <encoded>' >&2; exit 2; }
      config=$2
      shift 2
      ;;
    *)
      echo "run.sh stand-in: unknown option $1" >&2
      echo 'usage: run.sh --jitconfig <encoded>' >&2
      exit 2
      ;;
  esac
done
[ -n "$config" ] || { echo 'usage: run.sh --jitconfig <encoded>' >&2; exit 2; }

decoded=$(printf '%s' "$config" | base64 -d 2>/dev/null) || fail 'the JIT config is not base64'
callback=$(printf '%s' "$decoded" | sed -n 's/.*"callbackUrl":"\([^"]*\)".*/\1/p')
name=$(printf '%s' "$decoded" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
[ -n "$callback" ] || fail 'the JIT config names no callbackUrl'

# The config is the credential: it travels in the body, never on a log line.
post() {
  timeout "$1" wget -q -O - --header 'Content-Type: text/plain' --post-data "$config" "$callback/$2"
}

say "runner $name connecting to $callback"
# Like a real runner waiting for work: ask every second for up to 120 s.
tries=0
job=''
while :; do
  job=$(post 30 start) || fail 'the forge refused the runner or could not be reached'
  [ -n "$job" ] && break
  tries=$((tries + 1))
  [ "$tries" -ge 120 ] && fail 'no job assigned within 120 s'
  sleep 1
done
say "took job $job"

# The simulator answers once the job's simulated run is over.
result=$(post 3600 finish) || fail 'could not report the job as finished'
case "$result" in
  *'"conclusion":"cancelled"'*) fail "job was cancelled: $result" ;;
  *'"conclusion":"success"'*) say "job finished: $result" ;;
  *) fail "unexpected answer: $result" ;;
esac
exit 0
