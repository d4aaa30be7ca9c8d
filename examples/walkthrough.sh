#!/usr/bin/env bash
# shellcheck disable=SC2154  # pick() below assigns the variables it names
# A docflow session from account to result, with curl, against a running
# server. docs/api.md ("A walk-through with curl") shows the same requests
# with their answers.
#
#   examples/walkthrough.sh [FILE]
#
#   DOCFLOW_URL      the server (default http://127.0.0.1:8000)
#   FILE             a PDF or DOCX to upload (default tests/fixtures/en-1page.pdf)
#   EVENTS_TIMEOUT   seconds to follow /events before giving up (default 300)
#
# Every step checks its status code; on any other answer the script prints
# the body and exits 1. It needs bash, curl, python3 (to pick JSON members)
# and sha256sum. Each run registers a new account with a random name.
set -euo pipefail

B=${DOCFLOW_URL:-http://127.0.0.1:8000}
B=${B%/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FILE=${1:-$HERE/../tests/fixtures/en-1page.pdf}
EVENTS_TIMEOUT=${EVENTS_TIMEOUT:-300}

[ -r "$FILE" ] || { echo "walkthrough: cannot read $FILE" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/docflow-walk.XXXXXX")
trap 'rm -rf "$T"' EXIT

n=0
step() {
  n=$((n + 1))
  printf '\n== %d. %s\n' "$n" "$*"
}

die() {
  echo "walkthrough: FAILED: $*" >&2
  exit 1
}

# call EXPECTED_STATUS CURL_ARGS... : one request; the body lands in $T/body,
# the response head in $T/head. Any other status prints the body and exits.
call() {
  local want=$1 got
  shift
  got=$(curl -sS --max-time 60 -o "$T/body" -D "$T/head" -w '%{http_code}' "$@") ||
    die "curl $* could not complete (is docflow running at $B?)"
  if [ "$got" != "$want" ]; then
    echo "walkthrough: expected HTTP $want, got $got from: curl $*" >&2
    cat "$T/body" >&2
    echo >&2
    exit 1
  fi
  echo "HTTP $got"
}

# pick [-f FILE] NAME=PATH...: sets shell variables from members of a JSON
# document ($T/body by default), by dotted paths such as items.0.id
# ("#items" is the length of items); objects and arrays come out as JSON,
# null as "null". A missing member fails the walk-through.
pick() {
  local file=$T/body out
  if [ "$1" = -f ]; then file=$2; shift 2; fi
  out=$(python3 - "$file" "$@" <<'PY'
import json, shlex, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
for spec in sys.argv[2:]:
    name, _, path = spec.partition("=")
    count = path.startswith("#")
    v = doc
    for k in path.lstrip("#").split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    if count:
        v = len(v)
    if v is None:
        v = "null"
    elif isinstance(v, (dict, list)):
        v = json.dumps(v, ensure_ascii=False)
    print("%s=%s" % (name, shlex.quote(str(v))))
PY
  ) || die "unexpected JSON in $file: $(head -c 500 "$file")"
  eval "$out"
}

# header NAME: a header of the last response ($T/head), or nothing.
header() {
  tr -d '\r' < "$T/head" |
    awk -v n="$1" -F': ' 'tolower($1) == tolower(n) { sub(/^[^:]*: /, ""); print; exit }'
}

expect() {  # expect WHAT GOT WANTED
  [ "$2" = "$3" ] || die "$1: expected '$3', got '$2'"
}

hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
RAND=$(hex 4)
USERNAME=walk-$RAND
PASSWORD=walk-password-$(hex 8)
echo "docflow walk-through against $B as $USERNAME, uploading $FILE"

step "Register an account: POST /auth/register"
call 201 "$B/auth/register" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}"
cat "$T/body"; echo
pick role=role
expect "role" "$role" user

step "Log in (JSON): POST /auth/login"
call 200 "$B/auth/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}"
pick TOKEN=access_token REFRESH=refresh_token token_type=token_type \
  expires_in=expires_in refresh_expires_in=refresh_expires_in
AUTH="Authorization: Bearer $TOKEN"
echo "token_type $token_type; access token for $expires_in s, refresh token for $refresh_expires_in s"

step "Who am I: GET /auth/me"
call 200 "$B/auth/me" -H "$AUTH"
cat "$T/body"; echo
pick username=username
expect "username" "$username" "$USERNAME"

step "Upload with an Idempotency-Key: POST /documents"
KEY=walk-upload-$RAND
call 201 "$B/documents" -H "$AUTH" -H "Idempotency-Key: $KEY" \
  -F "file=@$FILE" -F 'title=Walk-through'
echo "Location: $(header Location)"
cat "$T/body"; echo
pick ID=id SHA=sha256 status=status
expect "status" "$status" UPLOADED
expect "Location" "$(header Location)" "/documents/$ID"

step "The same upload again, same key: the first answer, not a second document"
call 201 "$B/documents" -H "$AUTH" -H "Idempotency-Key: $KEY" \
  -F "file=@$FILE" -F 'title=Walk-through'
echo "Idempotent-Replayed: $(header Idempotent-Replayed)"
pick id=id
echo "id $id"
expect "Idempotent-Replayed" "$(header Idempotent-Replayed)" true
expect "replayed id" "$id" "$ID"

step "List my documents: GET /documents"
call 200 "$B/documents?limit=10" -H "$AUTH"
pick count='#items' first=items.0.id status=items.0.status next_cursor=next_cursor
echo "$count item(s): $first ($status); next_cursor $next_cursor"
expect "number of documents" "$count" 1
expect "the listed document" "$first" "$ID"

step "Process it with an Idempotency-Key: POST /documents/$ID/process"
call 202 -X POST "$B/documents/$ID/process" -H "$AUTH" -H "Idempotency-Key: walk-process-$RAND"
pick status=status
echo "status $status"
expect "status" "$status" PROCESSING

step "Follow the status events to a terminal status: GET /documents/$ID/events"
if ! curl -sS -N --max-time "$EVENTS_TIMEOUT" -D "$T/head" "$B/documents/$ID/events" -H "$AUTH" |
  tee "$T/events"; then
  die "the event stream did not end within ${EVENTS_TIMEOUT}s"
fi
code=$(head -n1 "$T/head" | cut -d' ' -f2)
if [ "$code" != 200 ]; then
  cat "$T/events" >&2
  die "GET /documents/$ID/events answered $code, expected 200"
fi
grep '^data: ' "$T/events" | tail -n1 | cut -c7- > "$T/last"
pick -f "$T/last" status=status error=error
expect "final status (error: $error)" "$status" COMPLETED

step "Fetch the result: GET /documents/$ID/result"
call 200 "$B/documents/$ID/result" -H "$AUTH"
cat "$T/body"; echo
pick of=document_id pages=pages words=word_count language=language
echo "pages $pages, words $words, language $language"
expect "document_id" "$of" "$ID"

step "Fetch the full text: GET /documents/$ID/result/text"
call 200 "$B/documents/$ID/result/text" -H "$AUTH"
echo "Content-Type: $(header Content-Type)"
cat "$T/body"; echo

step "Download the original and compare SHA-256: GET /documents/$ID/content"
call 200 "$B/documents/$ID/content" -H "$AUTH"
echo "ETag: $(header ETag)"
got=$(sha256sum < "$T/body" | cut -d' ' -f1)
want=$(sha256sum < "$FILE" | cut -d' ' -f1)
echo "sha256 $got"
expect "sha256 of the download" "$got" "$want"
expect "sha256 of the Document" "$SHA" "$want"
echo "the download, the uploaded file and the Document's sha256 agree"

step "Trade the refresh token for a new pair: POST /auth/refresh"
call 200 "$B/auth/refresh" -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$REFRESH\"}"
pick NEW_REFRESH=refresh_token expires_in=expires_in
[ "$NEW_REFRESH" != "$REFRESH" ] || die "the refresh token did not rotate"
echo "a new access token for $expires_in s and a new refresh token (the old one is spent)"

step "Log out: POST /auth/logout"
call 204 "$B/auth/logout" -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$NEW_REFRESH\"}"

step "The logged-out refresh token is refused: POST /auth/refresh"
call 401 "$B/auth/refresh" -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$NEW_REFRESH\"}"
pick type=type
echo "type $type"

printf '\nwalk-through complete: document %s processed, %d steps passed\n' "$ID" "$n"
