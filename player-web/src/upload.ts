// Resumable uploads with tus-js-client, of a lecture's media or an attachment's file:
// progress, speed and time left, pause and resume, and resuming after a page reload
// (pick the same file again).
import * as tus from 'tus-js-client';
import { authHeaders } from './api';
import { RateMeter } from './format';

/** What a file is uploaded for. It goes to the server as tus metadata, beside the
 * file's name, and keys the resume fingerprint. */
export type UploadTarget = { lecture_id: string } | { attachment_id: string };

export interface UploadState {
  /** The lecture's or the attachment's id. */
  id: string;
  file: File;
  sent: number;
  total: number;
  rate: number;
  status: 'uploading' | 'paused' | 'done' | 'error';
  error?: string;
  resumedFrom?: number;
}

export class FileUpload {
  private upload: tus.Upload;
  private meter = new RateMeter();
  state: UploadState;

  constructor(target: UploadTarget, file: File, private readonly onChange: (s: UploadState) => void) {
    const id = 'lecture_id' in target ? target.lecture_id : target.attachment_id;
    this.state = { id, file, sent: 0, total: file.size, rate: 0, status: 'uploading' };
    this.upload = new tus.Upload(file, {
      endpoint: '/api/uploads',
      // Chunks bound what a dropped connection costs and what one request holds.
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      metadata: { ...target, filename: file.name, filetype: file.type },
      // One fingerprint per lecture (or attachment) and file, so a reload resumes the right upload.
      fingerprint: async (f: File) => ['lectern', id, f.name, f.size, f.lastModified].join('|'),
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onBeforeRequest: (req) => {
        for (const [k, v] of Object.entries(authHeaders())) req.setHeader(k, v);
      },
      onProgress: (sent, total) => {
        this.state.sent = sent;
        this.state.total = total;
        this.state.rate = this.meter.update(sent, performance.now());
        this.onChange(this.state);
      },
      onSuccess: () => {
        this.state.status = 'done';
        this.state.sent = this.state.total;
        this.onChange(this.state);
      },
      onError: (err) => {
        this.state.status = 'error';
        this.state.error = errorMessage(err);
        this.onChange(this.state);
      },
    });
  }

  async start(): Promise<void> {
    const previous = await this.upload.findPreviousUploads();
    if (previous.length) {
      this.upload.resumeFromPreviousUpload(previous[0]);
      this.state.resumedFrom = previous[0].size ?? undefined;
    }
    this.upload.start();
    this.onChange(this.state);
  }

  pause(): void {
    this.upload.abort();
    this.state.status = 'paused';
    this.meter.reset();
    this.state.rate = 0;
    this.onChange(this.state);
  }

  resume(): void {
    this.state.status = 'uploading';
    this.upload.start();
    this.onChange(this.state);
  }
}

function errorMessage(err: Error): string {
  const body = (err as { originalResponse?: { getBody(): string } }).originalResponse?.getBody();
  try {
    const parsed = body ? JSON.parse(body) : null;
    if (parsed?.error?.message) return parsed.error.message;
  } catch {
    /* not JSON */
  }
  return err.message;
}
