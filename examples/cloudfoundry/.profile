# Runs before the app starts (Cloud Foundry sources .profile from the app's root).
# Sidecars start alongside the app, in no defined order: wait up to 60 s for
# credbroker to be ready, then start the app anyway (its calls then get 503 with
# the reason in X-Credbroker-Error, and credbroker keeps trying).
credbroker_wait=0
until curl -fsS -o /dev/null http://127.0.0.1:9411/readyz 2>/dev/null; do
  credbroker_wait=$((credbroker_wait + 1))
  if [ "$credbroker_wait" -ge 60 ]; then
    echo "credbroker not ready after 60 s: curl http://127.0.0.1:9411/readyz says why" >&2
    break
  fi
  sleep 1
done
unset credbroker_wait
