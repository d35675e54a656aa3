// The browsable API reference at /api/docs: Swagger UI over /api/openapi.json, bundled
// here so it loads from this origin (no CDN) under the same CSP as the app.
import SwaggerUIBundle from 'swagger-ui-dist/swagger-ui-es-bundle.js';
import 'swagger-ui-dist/swagger-ui.css';
import { session } from './api';

SwaggerUIBundle({
  url: '/api/openapi.json',
  dom_id: '#api-docs',
  deepLinking: true,
  // A signed-in user's token, when this browser has one, so "Try it out" works.
  requestInterceptor: (req: { headers: Record<string, string> }) => {
    const token = session()?.token;
    if (token && !req.headers.Authorization) req.headers.Authorization = `Bearer ${token}`;
    return req;
  },
});
