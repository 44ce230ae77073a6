#!/usr/bin/env bash
# Builds kaon's SparkListener jar.
#
#   spark-listener/build.sh [SPARK_HOME] [OUT_JAR]
#
# SPARK_HOME: a Spark distribution, or the pyspark package directory of a pip install
# (anything with a jars/ directory holding spark-core); defaults to $SPARK_HOME.
# OUT_JAR defaults to spark-listener/target/kaon-spark-listener.jar.
#
# The jar compiled against one Spark version runs on 3.5 (Scala 2.12) and 4.x (Scala 2.13)
# because the code never links a method whose signature mentions a Scala type; the check
# after compiling enforces that.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
spark_home="${1:-${SPARK_HOME:-}}"
out="${2:-$here/target/kaon-spark-listener.jar}"

die() {
    echo "build.sh: $*" >&2
    exit 1
}

[ -n "$spark_home" ] || die "no Spark given: pass SPARK_HOME as the first argument or set \$SPARK_HOME"
jars="$spark_home/jars"
compgen -G "$jars/spark-core_*.jar" >/dev/null ||
    die "no Spark jars (spark-core_*.jar) in $jars: SPARK_HOME must be a Spark distribution or a pyspark package directory"
command -v javac >/dev/null || die "javac not found: install a JDK, 17 or newer"
command -v jar >/dev/null || die "jar not found: install a JDK, 17 or newer"
javac_major="$(javac -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p')"
[ -n "$javac_major" ] && [ "$javac_major" -ge 17 ] ||
    die "javac 17 or newer needed (found: $(javac -version 2>&1))"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

javac --release 17 -encoding UTF-8 -Xlint:all,-path \
    -cp "$jars/*" -d "$work/classes" "$here"/src/dev/kaon/spark/*.java

# The cross-version rule: no direct call to, or field of, anything in scala.* (the names are
# only used as strings, through Reflect). A descriptor mentioning a Scala type differs between
# Scala 2.12 and 2.13 and fails with NoSuchMethodError on the other one.
if command -v javap >/dev/null; then
    if javap -c -p "$work"/classes/dev/kaon/spark/*.class |
        grep -E '(Method|Field|InterfaceMethod) .*scala/' >&2; then
        die "the classes above link Scala members directly; go through Reflect instead"
    fi
fi

mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
printf 'Implementation-Title: kaon-spark-listener\nImplementation-Vendor: kaon\n' >"$work/manifest"
rm -f "$out"
# Fixed entry dates and a sorted file list: rebuilding unchanged sources gives the same jar
# (bar the JDK's Created-By line).
(cd "$work/classes" && find . -name '*.class' | LC_ALL=C sort >"$work/files")
(cd "$work/classes" && jar --create --file "$out" --manifest "$work/manifest" \
    --date 2000-01-01T00:00:00Z @"$work/files")
echo "built $out (against $(basename "$(compgen -G "$jars/spark-core_*.jar" | head -n1)" .jar))"
