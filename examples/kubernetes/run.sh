#!/usr/bin/env bash
# Runs one sharded promotion on Kubernetes: the Indexed Job of
# promoter-job.yaml, then, whatever its outcome, the merge of its shards'
# reports (merge-job.yaml), whose log is the combined report and whose exit
# status is the promotion's.
#
#   examples/kubernetes/run.sh [RUN_ID]     (default: the UTC time, 20261129-060000)
#
# Needs kubectl with a context and namespace where setup.yaml was applied.
set -euo pipefail
cd "$(dirname "$0")"
id="${1:-$(date -u +%Y%m%d-%H%M%S)}"
name="promoter-$id"

sed "s/RUN_ID/$id/g" promoter-job.yaml | kubectl create -f -
# A Job ends Complete (every index succeeded) or Failed (an index used up
# its retries, or the deadline passed).
while :; do
	state="$(kubectl get job "$name" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')"
	case " $state " in
	*" Complete "* | *" Failed "*) break ;;
	esac
	sleep 30
done
echo "job $name: $state" >&2

sed "s/RUN_ID/$id/g" merge-job.yaml | kubectl create -f -
while :; do
	state="$(kubectl get job "$name-merge" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')"
	case " $state " in
	*" Complete "* | *" Failed "*) break ;;
	esac
	sleep 5
done
kubectl logs "job/$name-merge"
case " $state " in
*" Complete "*) exit 0 ;;
*) exit 1 ;;
esac
