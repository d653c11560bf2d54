/**
 * The "cellship" sidebar panel: tabs for jobs (with the cluster's jobs submitted from
 * elsewhere), batch runs, models, running `cellship serve` servers and deployments on
 * Kubernetes, the releases of models (with a Release… button), a detail view for one job or batch, each a Lumino widget shown and hidden
 * in the panel's body. A push channel (server-sent events from the server extension,
 * `push.ts`) refreshes within a second of a state change in the job store; one `Poll`
 * keeps whatever is shown live as the fallback and for what the store does not hold
 * (backing off while the server fails, slowing down while the panel is hidden, standing
 * by while the browser tab is). It first asks the server extension for its version and
 * says plainly when the extension is missing or speaks another API.
 */
import { refreshIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { IPoll, Poll } from '@lumino/polling';
import { Panel, Widget } from '@lumino/widgets';

import { api, checkServer, IVersion } from './api';
import { BatchDetailView, BatchesView } from './batches';
import { el } from './dom';
import { JobDetailView } from './jobdetail';
import { JobsModel, JobsView } from './jobs';
import { ModelsView } from './models';
import { PushChannel } from './push';
import { ReleasesView } from './releases';
import { DeploymentsView, ServersView } from './serving';

export interface IPanelSettings {
  refreshInterval: number; // seconds
  defaultBackend: string;
  maxLogLines: number;
  pageSize: number; // jobs per page of the list
}

export const DEFAULT_SETTINGS: IPanelSettings = {
  refreshInterval: 2,
  defaultBackend: 'local',
  maxLogLines: 2000,
  pageSize: 50
};

/** While the panel is hidden only the jobs list is polled (for `ICellshipJobs`), this
 * many times slower, but at least every HIDDEN_MIN_MS. */
const HIDDEN_SLOWDOWN = 10;
const HIDDEN_MIN_MS = 20_000;
const BACKOFF_MAX_MS = 60_000;

type Tab = 'jobs' | 'batches' | 'models' | 'releases' | 'servers' | 'deployments';

/** A failure a view already shows as its own sentence: the banner stays out of it. */
class ShownInView extends Error {}

export class CellshipPanel extends Panel {
  settings: IPanelSettings = { ...DEFAULT_SETTINGS };
  readonly jobs = new JobsModel();
  private readonly banner = el('div', 'cs-banner');
  private readonly tabBar = el('div', 'cs-tabs');
  private readonly body = new Panel();
  private readonly jobsView: JobsView;
  private readonly batchesView: BatchesView;
  private readonly modelsView: ModelsView;
  readonly releasesView: ReleasesView;
  private readonly serversView: ServersView;
  private readonly deploymentsView: DeploymentsView;
  private push: PushChannel | null = null;
  private pushRefreshing = false;
  private pushAgain = false;
  private readonly tabButtons = new Map<Tab, HTMLButtonElement>();
  private tab: Tab = 'jobs';
  private detail: JobDetailView | BatchDetailView | null = null;
  private version: IVersion | undefined;
  private readonly poll: Poll;
  /** Advances running jobs' durations between polls; no request. */
  private readonly ticker: Poll;

  constructor(private readonly commands: CommandRegistry) {
    super();
    this.id = 'cellship-panel';
    this.addClass('cs-panel');
    this.title.caption = 'cellship: jobs, batch runs, models, releases, servers, deployments';
    const header = el('div', 'cs-header');
    const refreshButton = el('button', 'cs-refresh');
    refreshButton.type = 'button';
    refreshButton.title = 'Refresh now';
    refreshButton.setAttribute('aria-label', 'Refresh now');
    refreshIcon.element({ container: refreshButton, tag: 'span' });
    refreshButton.addEventListener('click', () => void this.refresh());
    header.append(el('span', 'cs-title', 'cellship'), refreshButton);
    for (const [tab, label] of [
      ['jobs', 'Jobs'],
      ['batches', 'Batch runs'],
      ['models', 'Models'],
      ['releases', 'Releases'],
      ['servers', 'Servers'],
      ['deployments', 'Deployments']
    ] as [Tab, string][]) {
      const node = el('button', 'cs-tab', label);
      node.type = 'button';
      node.dataset.tab = tab;
      node.addEventListener('click', () => this.showTab(tab));
      this.tabButtons.set(tab, node);
      this.tabBar.appendChild(node);
    }
    this.banner.hidden = true;
    const chrome = new Widget();
    chrome.addClass('cs-chrome');
    chrome.node.append(header, this.banner, this.tabBar);
    this.body.addClass('cs-body');
    this.jobsView = new JobsView(this.jobs, id => this.showJob(id));
    this.batchesView = new BatchesView(id => this.showBatch(id));
    this.modelsView = new ModelsView(commands);
    this.releasesView = new ReleasesView(() => void this.refresh());
    this.serversView = new ServersView(() => void this.refresh());
    this.deploymentsView = new DeploymentsView(() => void this.refresh());
    for (const view of this.listViews) {
      view.hide();
      this.body.addWidget(view);
    }
    this.addWidget(chrome);
    this.addWidget(this.body);
    this.jobs.requestRefresh = () => this.refresh();

    this.poll = new Poll({
      auto: false, // started once the server extension answered
      factory: () => this.load(),
      frequency: this.frequency(),
      standby: 'when-hidden',
      name: 'cellship:panel'
    });
    this.ticker = new Poll({
      auto: false,
      factory: () => Promise.resolve(this.tick()),
      frequency: { interval: 1000, backoff: false },
      standby: () => !this.isVisible || 'when-hidden',
      name: 'cellship:ticker'
    });
    this.showTab('jobs', false);
  }

  /** Check the server extension, then start polling. */
  async start(): Promise<void> {
    const { problem, version } = await checkServer();
    this.version = version;
    if (problem) {
      this.banner.textContent = problem;
      this.banner.hidden = false;
      this.tabBar.hidden = true;
      this.body.hide();
      this.node.dataset.state = 'unavailable';
      return;
    }
    // A tab appears only for what the server extension offers (models came later).
    for (const tab of ['models', 'releases', 'servers', 'deployments'] as Tab[]) {
      this.tabButtons.get(tab)!.hidden = !this.capabilities.includes(tab);
    }
    this.jobs.clusterEnabled = this.capabilities.includes('cluster_jobs');
    this.node.dataset.state = 'ready';
    this.node.dataset.version = version?.version ?? '';
    void this.poll.start();
    void this.ticker.start();
    if (this.capabilities.includes('events')) {
      this.push = new PushChannel(api.eventsEndPoint, () => this.pushed(), state => {
        this.node.dataset.push = state;
      });
      this.push.start();
    }
  }

  get ready(): boolean {
    return this.node.dataset.state === 'ready';
  }

  setSettings(settings: IPanelSettings): void {
    const pageSizeChanged = settings.pageSize !== this.jobs.pageSize;
    this.settings = settings;
    this.jobs.pageSize = settings.pageSize;
    this.poll.frequency = this.frequency();
    if (this.ready && pageSizeChanged) {
      void this.refresh();
    }
  }

  showTab(tab: Tab, refresh = true): void {
    this.tab = tab;
    this.closeDetail();
    for (const [name, node] of this.tabButtons) {
      node.classList.toggle('cs-mod-active', name === tab);
    }
    const views = {
      jobs: this.jobsView,
      batches: this.batchesView,
      models: this.modelsView,
      releases: this.releasesView,
      servers: this.serversView,
      deployments: this.deploymentsView
    };
    for (const [name, view] of Object.entries(views)) {
      view.setHidden(name !== tab);
    }
    if (refresh) {
      void this.refresh();
    }
  }

  showJob(id: string): void {
    this.showDetail(
      new JobDetailView(id, {
        commands: this.commands,
        maxLogLines: this.settings.maxLogLines,
        onBack: () => this.showTab('jobs'),
        onChanged: () => void this.refresh()
      })
    );
  }

  showBatch(id: string): void {
    this.tab = 'batches';
    this.showDetail(
      new BatchDetailView(id, this.commands, () => this.showTab('batches'), () => void this.refresh())
    );
  }

  /** Poll now; resolves once that poll has answered (or failed). */
  async refresh(): Promise<void> {
    if (!this.ready) {
      return;
    }
    await this.poll.refresh();
    await this.poll.tick.catch(() => undefined);
  }

  /** The store changed (the push channel said so): refresh now, but one refresh at a
   * time - changes arriving meanwhile are folded into one more refresh after it. */
  private pushed(): void {
    if (this.pushRefreshing) {
      this.pushAgain = true;
      return;
    }
    this.pushRefreshing = true;
    void this.refresh().finally(() => {
      this.pushRefreshing = false;
      if (this.pushAgain) {
        this.pushAgain = false;
        this.pushed();
      }
    });
  }

  get capabilities(): string[] {
    return this.version?.capabilities ?? [];
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.poll.frequency = this.frequency();
    void this.refresh();
  }

  protected onBeforeHide(msg: Message): void {
    this.poll.frequency = this.frequency(false);
    super.onBeforeHide(msg);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.push?.dispose();
    this.poll.dispose();
    this.ticker.dispose();
    this.closeDetail();
    this.jobs.dispose();
    super.dispose();
  }

  private frequency(visible = this.isVisible): IPoll.Frequency {
    const interval = this.settings.refreshInterval * 1000;
    return {
      interval: visible ? interval : Math.max(interval * HIDDEN_SLOWDOWN, HIDDEN_MIN_MS),
      backoff: true,
      max: Math.max(BACKOFF_MAX_MS, interval * HIDDEN_SLOWDOWN, HIDDEN_MIN_MS)
    };
  }

  private showDetail(view: JobDetailView | BatchDetailView): void {
    this.closeDetail();
    for (const list of this.listViews) {
      list.hide();
    }
    this.detail = view;
    this.body.addWidget(view);
    void this.refresh();
  }

  private closeDetail(): void {
    this.detail?.dispose(); // detaches it and ends its log stream
    this.detail = null;
  }

  /** One poll: the jobs list always (other extensions follow it through ICellshipJobs),
   * and whatever else the panel shows while it is visible. A failure shows in the banner
   * and rejects, so the Poll backs off. */
  private async load(): Promise<void> {
    try {
      const work: Promise<void>[] = [this.jobs.load()];
      if (this.isVisible) {
        work.push(this.loadShown());
        if (!this.detail && this.tab === 'jobs') {
          void this.jobs.loadCluster(); // on its own: a slow cluster never holds the list
        }
      }
      await Promise.all(work);
      this.banner.hidden = true;
    } catch (error) {
      if (!(error instanceof ShownInView)) {
        this.banner.textContent = `cellship: ${(error as Error).message ?? String(error)}`;
        this.banner.hidden = false;
      }
      throw error;
    }
  }

  private get listViews(): Widget[] {
    return [
      this.jobsView,
      this.batchesView,
      this.modelsView,
      this.releasesView,
      this.serversView,
      this.deploymentsView
    ];
  }

  /** Fetch a list for its view; a failure becomes the view's own sentence (never a
   * blank view) and still rejects, so the Poll backs off. */
  private async loadInto<T>(
    view: ServersView | DeploymentsView | ReleasesView,
    fetch: () => Promise<T>,
    show: (answer: T) => void
  ): Promise<void> {
    let answer: T;
    try {
      answer = await fetch();
    } catch (error) {
      const message = (error as Error).message ?? String(error);
      view.setError(message.endsWith('.') ? message : `${message}.`);
      throw new ShownInView(message);
    }
    show(answer);
  }

  private async loadShown(): Promise<void> {
    const detail = this.detail;
    if (detail instanceof JobDetailView) {
      const job = await api.job(detail.jobId);
      if (this.detail !== detail) {
        return; // the user moved on meanwhile
      }
      detail.setJob(job);
      if (detail.wantsMetrics) {
        const { series } = await api.metrics(detail.jobId);
        if (this.detail === detail) {
          detail.updateMetrics(series);
        }
      }
    } else if (detail instanceof BatchDetailView) {
      const batch = await api.batch(detail.batchId);
      if (this.detail === detail) {
        detail.setBatch(batch);
      }
    } else if (this.tab === 'models') {
      this.modelsView.setModels((await api.models()).models);
    } else if (this.tab === 'batches') {
      this.batchesView.setBatches((await api.batches()).batches);
    } else if (this.tab === 'releases') {
      await this.loadInto(this.releasesView, api.releases, answer =>
        this.releasesView.setReleases(answer.releases)
      );
    } else if (this.tab === 'servers') {
      await this.loadInto(this.serversView, api.servers, answer =>
        this.serversView.setServers(answer.servers)
      );
    } else if (this.tab === 'deployments') {
      await this.loadInto(this.deploymentsView, api.deployments, answer =>
        this.deploymentsView.setDeployments(answer)
      );
    }
  }

  private tick(): void {
    if (this.detail instanceof JobDetailView) {
      this.detail.tick();
    } else if (!this.detail && this.tab === 'jobs') {
      this.jobsView.tick();
    }
  }
}
