/**
 * What cellship offers other JupyterLab extensions: the jobs the panel keeps polling and
 * a signal for every status change it sees. Require `ICellshipJobs` in a plugin (and list
 * `cellship` in your extension's `sharedPackages` with `bundled: false`) to react when a
 * job starts, succeeds, fails or is cancelled without polling the server a second time.
 */
import { ISignal } from '@lumino/signaling';
import { Token } from '@lumino/coreutils';

import { IJobSummary, Status } from './api';

/** One job whose status differs from the last poll (or that appeared since). */
export interface IJobChange {
  /** The job as the server reported it in this poll. */
  readonly job: IJobSummary;
  /** Its status one poll earlier; null when the job is new to the panel. */
  readonly previous: Status | null;
}

export interface ICellshipJobs {
  /** The jobs of the panel's current list, newest first (its loaded pages, its filters). */
  readonly jobs: ReadonlyArray<IJobSummary>;
  /** Emitted once per poll for each job that appeared or changed status. */
  readonly jobChanged: ISignal<ICellshipJobs, IJobChange>;
  /** Emitted after every successful poll of the list (the whole list, changed or not). */
  readonly listChanged: ISignal<ICellshipJobs, ReadonlyArray<IJobSummary>>;
  /** Poll now instead of at the next interval; resolves once the list is fresh. */
  refresh(): Promise<void>;
}

export const ICellshipJobs = new Token<ICellshipJobs>(
  'cellship:ICellshipJobs',
  'The jobs the cellship panel polls, with a signal for each status change.'
);
