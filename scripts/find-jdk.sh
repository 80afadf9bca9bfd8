# Sourced by ./llmflash and ./build: sets LLMFLASH_JAVA_HOME to a JDK 25 or newer, or exits with a message.
# Order: JAVA_HOME, the `java` on PATH, then well-known install folders (newest first).

_llmflash_java_major() {
  # prints the feature version of the JDK at $1 (a JAVA_HOME), or nothing
  local rel="$1/release" v=""
  if [ -f "$rel" ]; then
    v=$(sed -n 's/^JAVA_VERSION="\([0-9][0-9]*\).*/\1/p' "$rel" | head -n 1)
  fi
  if [ -z "$v" ] && [ -x "$1/bin/java" ]; then
    v=$("$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -n 1)
  fi
  echo "$v"
}

_llmflash_is_jdk25() {
  # a full JDK (javac present: the build needs it) of version 25 or newer
  [ -n "$1" ] && [ -x "$1/bin/java" ] && [ -x "$1/bin/javac" ] || return 1
  local m; m=$(_llmflash_java_major "$1")
  [ -n "$m" ] && [ "$m" -ge 25 ]
}

llmflash_find_jdk() {
  local c
  if [ -n "${JAVA_HOME:-}" ] && _llmflash_is_jdk25 "$JAVA_HOME"; then LLMFLASH_JAVA_HOME="$JAVA_HOME"; return 0; fi
  if command -v java >/dev/null 2>&1; then
    c=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    if _llmflash_is_jdk25 "$c"; then LLMFLASH_JAVA_HOME="$c"; return 0; fi
  fi
  for c in $(ls -d /usr/lib/jvm/* /usr/java/* /opt/java/* /opt/jdk* "$HOME"/.sdkman/candidates/java/* \
              "$HOME"/.jdks/* /Library/Java/JavaVirtualMachines/*/Contents/Home 2>/dev/null | sort -rV); do
    if _llmflash_is_jdk25 "$c"; then LLMFLASH_JAVA_HOME="$c"; return 0; fi
  done
  echo "llmflash: error: no JDK 25 or newer found (looked at JAVA_HOME, the java on PATH, /usr/lib/jvm, /usr/java, /opt/java, ~/.sdkman). Install one (e.g. 'apt-get install temurin-25-jdk' from Adoptium's repository, or unpack a JDK 25 under /opt/java) or set JAVA_HOME to it." >&2
  return 1
}
