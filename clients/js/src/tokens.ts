import { TidegateError } from "./errors.js";

/** Where tokens come from: a fixed one, or `getToken`, asked again before the current one
 * expires (read from its `exp` claim), after a 401 or a 4001 close. */
export class Tokens {
  private token: string | undefined;
  private refreshAt = Infinity;
  private pending: Promise<string | undefined> | undefined;

  constructor(
    token: string | undefined,
    private readonly getToken: (() => string | Promise<string>) | undefined,
    private readonly marginMs: number,
  ) {
    this.remember(token);
  }

  /** Whether a refused token can be replaced by asking again. */
  get refreshable(): boolean {
    return this.getToken !== undefined;
  }

  /** The token to send now: the current one, or a fresh one when it is due. */
  async current(): Promise<string | undefined> {
    if (this.getToken && (this.token === undefined || Date.now() >= this.refreshAt)) {
      return this.refresh();
    }
    return this.token;
  }

  /** When the current token should be replaced (ms since the epoch; Infinity: never). */
  get dueAt(): number {
    return this.getToken ? this.refreshAt : Infinity;
  }

  /** Asks `getToken` for a new token; concurrent callers share one call. */
  refresh(): Promise<string | undefined> {
    const getToken = this.getToken;
    if (!getToken) return Promise.resolve(this.token);
    this.pending ??= (async () => {
      try {
        const token = await getToken();
        this.remember(token);
        return token;
      } catch (cause) {
        throw new TidegateError("token_unavailable", `getToken failed: ${String(cause)}`, { cause });
      } finally {
        this.pending = undefined;
      }
    })();
    return this.pending;
  }

  private remember(token: string | undefined) {
    this.token = token;
    const exp = token === undefined ? undefined : expiryMs(token);
    if (exp === undefined) {
      this.refreshAt = Infinity;
      return;
    }
    // Refresh `marginMs` before expiry, or halfway there for a token that lives less.
    const left = exp - Date.now();
    this.refreshAt = exp - Math.min(this.marginMs, Math.max(0, left) / 2);
  }
}

/** The `exp` claim of a JWT, in ms since the epoch; undefined when it has none or is not a
 * JWT the client can read (the server still decides). */
export function expiryMs(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)));
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
