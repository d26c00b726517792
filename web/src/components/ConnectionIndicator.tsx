import { useEffect, useState } from 'react';
import type { ConnectionState, Transport } from '../lib/eventStream';

const LIVE_LABEL: Record<Transport, string> = {
  websocket: 'Live · WebSocket',
  polling: 'Live · long-polling fallback (WebSocket unavailable)',
  http: 'Live · HTTP long-polling fallback (Socket.IO unavailable)',
};

function label(state: ConnectionState): string {
  switch (state.kind) {
    case 'connecting':
      return 'Connecting…';
    case 'live':
      return LIVE_LABEL[state.transport];
    case 'reconnecting':
      return 'Reconnecting';
    case 'offline':
      return 'Offline · waiting for the network';
    case 'ended':
      return 'Stopped · no longer receiving updates';
    case 'signed-out':
      return 'Signed out';
  }
}

/** Seconds left until `at`, re-rendering every second. */
function useCountdown(at: number | null): number | null {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (at === null) return;
    setNow(Date.now());
    const id = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(id);
  }, [at]);
  return at === null ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

export function ConnectionIndicator({
  state,
  onRetry,
}: {
  state: ConnectionState;
  onRetry: () => void;
}) {
  const nextRetryAt = state.kind === 'reconnecting' ? state.nextRetryAt : null;
  const secondsLeft = useCountdown(nextRetryAt);
  const transport = state.kind === 'live' ? state.transport : undefined;
  return (
    <div className="conn" data-state={state.kind} data-transport={transport}>
      <span className="conn-dot" aria-hidden="true" />
      {/* Only the state is a live region: a ticking countdown would be read out every second. */}
      <span role="status" className="conn-label">
        {label(state)}
      </span>
      {state.kind === 'reconnecting' && (
        <>
          <span className="conn-next">
            {secondsLeft === null ? ' · trying now…' : ` · next try in ${secondsLeft} s`}
          </span>
          {secondsLeft !== null && (
            <button type="button" className="link-button" onClick={onRetry}>
              Retry now
            </button>
          )}
        </>
      )}
    </div>
  );
}
