// Reading a section's data again as the snapshot changes, at most every `everyMs`, one read at a
// time: a read asked for while one runs starts when that one ends. rd.js, bdtable.js and
// compare.js read their data through it, only when the snapshot's `results_version` moved
// (state.js changeGate; the experiments table: `experiments_version`): a snapshot whose
// other figures changed (the fleet, the costs, a running experiment's progress) costs no
// request of theirs.

/**
 * A loader around `read` (an async function): `now()` reads at once (or once the read in flight
 * ends; it returns that read's promise), `soon()` reads when `everyMs` have passed since the last
 * read began, `busy()` says whether a read is in flight.
 */
export function reloader(read, everyMs) {
  let lastLoad = 0;
  let timer = 0;
  let inflight = null;
  let again = false;

  function now() {
    if (inflight) {
      again = true;
      return inflight;
    }
    lastLoad = Date.now();
    inflight = read().finally(() => {
      inflight = null;
      if (again) {
        again = false;
        now();
      }
    });
    return inflight;
  }

  function soon() {
    const wait = lastLoad + everyMs - Date.now();
    if (wait > 0) {
      timer ||= setTimeout(() => {
        timer = 0;
        soon();
      }, wait);
      return;
    }
    now();
  }

  return { now, soon, busy: () => inflight !== null };
}
