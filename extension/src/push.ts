/**
 * The panel's push channel: one server-sent-events stream (`/cellship/api/events`, read
 * with the authenticated fetch of `streamEvents`, never an EventSource with the token in
 * its URL) that says "the job store changed" within ~0.1 s of a commit. The panel then
 * refreshes as on a poll; its `Poll` stays as the fallback. A dropped stream reconnects
 * with backoff (1 s, doubling to 30 s; back to 1 s once connected again).
 */
import { IDisposable } from '@lumino/disposable';

import { streamEvents } from './api';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;

export type PushState = 'connecting' | 'connected' | 'off';

export class PushChannel implements IDisposable {
  private controller: AbortController | null = null;
  private disposed = false;
  private retryMs = RETRY_MIN_MS;
  private timer: number | undefined;
  private current: PushState = 'off';

  /**
   * @param onChange called on `hello` (what changed while not connected) and on every
   *   `changed` event
   * @param onState called when the channel connects, drops or stops
   */
  constructor(
    private readonly endPoint: string,
    private readonly onChange: () => void,
    private readonly onState: (state: PushState) => void = () => undefined
  ) {}

  get state(): PushState {
    return this.current;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  start(): void {
    if (!this.disposed && !this.controller) {
      void this.run();
    }
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    window.clearTimeout(this.timer);
    this.controller?.abort();
    this.controller = null;
    this.setState('off');
  }

  private async run(): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    this.setState('connecting');
    try {
      await streamEvents(this.endPoint, {
        signal: controller.signal,
        onEvent: event => {
          if (event.event === 'hello') {
            this.retryMs = RETRY_MIN_MS;
            this.setState('connected');
            this.onChange();
          } else if (event.event === 'changed') {
            this.onChange();
          }
        }
      });
    } catch (error) {
      console.debug('cellship: the push channel dropped; the poll carries on', error);
    }
    if (this.controller === controller) {
      this.controller = null;
    }
    if (this.disposed) {
      return;
    }
    this.setState('connecting');
    const wait = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    this.timer = window.setTimeout(() => this.start(), wait);
  }

  private setState(state: PushState): void {
    if (state !== this.current) {
      this.current = state;
      this.onState(state);
    }
  }
}
