import { stateClass } from '../format';

/** A run's or step's state in its colour. */
export function StateBadge({ state, title }: { state: string; title?: string }) {
  return (
    <span class={`badge ${stateClass(state)}`} title={title}>
      {state}
    </span>
  );
}
