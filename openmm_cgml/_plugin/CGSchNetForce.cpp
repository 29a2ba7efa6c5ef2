/*
 * openmm_cgml: the compiled SchNet-style CG network (see CGSchNetForce.h), its implementation, its serialization
 * proxy and its C interface for ctypes.
 */
#include "CGSchNetForce.h"
#include "CGVerletList.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/CustomCPPForceImpl.h"
#include "openmm/serialization/SerializationNode.h"
#include "openmm/serialization/SerializationProxy.h"
#include <algorithm>
#include <cmath>
#include <sstream>

using namespace OpenMM;
using namespace std;

namespace OpenMMCGML {

static const char* BLOCKS[2] = {"intra", "inter"};
static const char* LAYERS[9] = {"filter1.weight", "filter1.bias", "filter2.weight", "filter2.bias", "in2f.weight",
                                "out1.weight", "out1.bias", "out2.weight", "out2.bias"};

CGSchNetForce::CGSchNetForce() : numTypes(0), hidden(0), numRbf(0), numInteractions(0), intraCutoff(0),
    interCutoff(0), tableSpacing(0.001), skin(0.1), periodic(true) {}

int CGSchNetForce::addParticle(int type, int molecule) {
    if (type < 0)
        throw OpenMMException("CGSchNetForce: a particle's type must be >= 0");
    particleTypes.push_back(type);
    particleMolecules.push_back(molecule);
    return (int) particleTypes.size() - 1;
}

void CGSchNetForce::getParticleParameters(int index, int& type, int& molecule) const {
    ASSERT_VALID_INDEX(index, particleTypes);
    type = particleTypes[index];
    molecule = particleMolecules[index];
}

void CGSchNetForce::setArchitecture(int types, int width, int rbf, int steps, double intra, double inter) {
    if (types < 1 || width < 2 || rbf < 2 || steps < 1)
        throw OpenMMException("CGSchNetForce: the architecture needs >= 1 type, hidden >= 2, numRbf >= 2 and >= 1 "
                              "interaction");
    if (!(intra > 0) || !(inter > 0))
        throw OpenMMException("CGSchNetForce: the cutoffs must be positive");
    numTypes = types;
    hidden = width;
    numRbf = rbf;
    numInteractions = steps;
    intraCutoff = intra;
    interCutoff = inter;
    parameters.clear();
}

map<string, int> CGSchNetForce::getParameterSizes() const {
    map<string, int> sizes;
    const int h = hidden, r = numRbf, half = hidden / 2;
    sizes["embedding"] = numTypes * h;
    for (int b = 0; b < 2; b++) {
        sizes[string(BLOCKS[b]) + ".centers"] = r;
        sizes[string(BLOCKS[b]) + ".gamma"] = 1;
        for (int k = 0; k < numInteractions; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            const int n[9] = {h * r, h, h * h, h, h * h, h * h, h, h * h, h};
            for (int l = 0; l < 9; l++)
                sizes[p + LAYERS[l]] = n[l];
        }
    }
    sizes["readout1.weight"] = half * h;
    sizes["readout1.bias"] = half;
    sizes["readout2.weight"] = half;
    sizes["readout2.bias"] = 1;
    return sizes;
}

void CGSchNetForce::setParameter(const string& name, const vector<double>& values) {
    auto sizes = getParameterSizes();
    auto it = sizes.find(name);
    if (it == sizes.end())
        throw OpenMMException("CGSchNetForce: no parameter '" + name + "' in this architecture (set it first)");
    if ((int) values.size() != it->second)
        throw OpenMMException("CGSchNetForce: parameter '" + name + "' needs " + to_string(it->second) +
                              " values, got " + to_string(values.size()));
    for (double v : values)
        if (!std::isfinite(v))
            throw OpenMMException("CGSchNetForce: parameter '" + name + "' contains NaN or infinite values");
    parameters[name] = values;
}

const vector<double>& CGSchNetForce::getParameter(const string& name) const {
    auto it = parameters.find(name);
    if (it == parameters.end())
        throw OpenMMException("CGSchNetForce: the parameter '" + name + "' was not set");
    return it->second;
}

void CGSchNetForce::setTableSpacing(double spacing) {
    if (!(spacing >= 0))
        throw OpenMMException("CGSchNetForce: the table spacing must be >= 0 (0: exact filters)");
    tableSpacing = spacing;
}

void CGSchNetForce::setNeighborSkin(double distance) {
    if (!(distance >= 0))
        throw OpenMMException("CGSchNetForce: the neighbour-list skin must be >= 0");
    skin = distance;
}

/* ------------------------------------------------------------------------------------------------------------ */

static const double LOG2 = 0.69314718055994530942;

/* PyTorch's softplus (threshold 20) minus ln 2, and its derivative (the logistic function), from one exp. */
static inline double ssp(double x, double& slope) {
    if (x > 20.0) {
        slope = 1.0;
        return x - LOG2;
    }
    const double e = exp(-fabs(x)), inv = 1.0 / (1.0 + e);
    slope = x >= 0 ? inv : e * inv;
    return (x > 0 ? x : 0.0) + log1p(e) - LOG2;
}

/* out[n][m] = bias[m] + sum_k in[n][k] * wt[k][m] (wt: the transposed nn.Linear weight, nIn x nOut); rows of n.
 * N > 0: both sizes are N, known at compile time (the hidden width), so the loops unroll and vectorise fully. */
template <int N>
static inline void linearRows(const double* in, int rows, int nIn_, const double* wt, const double* bias, int nOut_,
                              double* out) {
    const int nIn = N > 0 ? N : nIn_, nOut = N > 0 ? N : nOut_;
    for (int r = 0; r < rows; r++) {
        double* o = out + (size_t) r * nOut;
        if (bias != NULL)
            for (int m = 0; m < nOut; m++)
                o[m] = bias[m];
        else
            for (int m = 0; m < nOut; m++)
                o[m] = 0.0;
        const double* x = in + (size_t) r * nIn;
        for (int k = 0; k < nIn; k++) {
            const double a = x[k];
            const double* w = wt + (size_t) k * nOut;
            for (int m = 0; m < nOut; m++)
                o[m] += a * w[m];
        }
    }
}

/* gin[n][k] (+)= sum_m g[n][m] * w[m][k] (w: the nn.Linear weight, nOut x nIn): the input gradient of a layer. */
template <int N>
static inline void linearBackRows(const double* g, int rows, int nOut_, const double* w, int nIn_, double* gin,
                                  bool add) {
    const int nIn = N > 0 ? N : nIn_, nOut = N > 0 ? N : nOut_;
    for (int r = 0; r < rows; r++) {
        double* o = gin + (size_t) r * nIn;
        if (!add)
            for (int k = 0; k < nIn; k++)
                o[k] = 0.0;
        const double* x = g + (size_t) r * nOut;
        for (int m = 0; m < nOut; m++) {
            const double a = x[m];
            const double* wr = w + (size_t) m * nIn;
            for (int k = 0; k < nIn; k++)
                o[k] += a * wr[k];
        }
    }
}

static vector<double> transposed(const vector<double>& w, int nOut, int nIn) {
    vector<double> t(w.size());
    for (int m = 0; m < nOut; m++)
        for (int k = 0; k < nIn; k++)
            t[(size_t) k * nOut + m] = w[(size_t) m * nIn + k];
    return t;
}

class CGSchNetForceImpl : public CustomCPPForceImpl {
public:
    CGSchNetForceImpl(const CGSchNetForce& owner) : CustomCPPForceImpl(owner), owner(owner) {}
    const CGSchNetForce& getOwner() const { return owner; }
    void initialize(ContextImpl& context);
    double computeForce(ContextImpl& context, const vector<Vec3>& positions, vector<Vec3>& forces);
    void updateParametersInContext(ContextImpl& context);
    long long numBuilds() const { return list.numBuilds; }
private:
    struct Layer {            // one block of one interaction step
        vector<double> f1W, f1b, f2W, f2b, in2fW, in2fT, o1W, o1T, o1b, o2W, o2T, o2b;
    };
    struct Pairs {            // the pairs of one block within its cutoff
        vector<int> i, j, interval;   // interval: of the filter table
        vector<double> r, ux, uy, uz, t, dEdr;   // t: position in the interval (0..1)
        vector<double> w, s;          // exact filters only: values and slopes (pairs x C)
    };
    void setParameters();
    void filter(int block, double r, double* value, double* slope) const;
    void gatherPairs();
    template <int HH>
    double evaluate(vector<Vec3>& forces);
    /* Step k's filter values (and slopes, unless s is NULL) of pair q of block b into w[0..H-1] (s[...]). */
    template <int HH>
    inline void filterAt(int b, const Pairs& p, size_t q, int k, double* w, double* s) const {
        const int H = HH > 0 ? HH : this->H;
        if (!tables) {
            copy_n(&p.w[q * C + (size_t) k * H], H, w);
            if (s != NULL)
                copy_n(&p.s[q * C + (size_t) k * H], H, s);
            return;
        }
        const double t = p.t[q];
        const double* c0 = &table[b][(size_t) p.interval[q] * 4 * C + (size_t) k * H];
        const double *c1 = c0 + C, *c2 = c0 + 2 * C, *c3 = c0 + 3 * C;
        for (int f = 0; f < H; f++)
            w[f] = c0[f] + t * (c1[f] + t * (c2[f] + t * c3[f]));
        if (s != NULL) {
            const double inv = 1.0 / spacing[b];
            for (int f = 0; f < H; f++)
                s[f] = (c1[f] + t * (2.0 * c2[f] + 3.0 * t * c3[f])) * inv;
        }
    }
    const CGSchNetForce& owner;
    int n = 0, H = 0, R = 0, K = 0, C = 0, half = 0;
    double cut[2] = {0, 0}, gamma[2] = {0, 0};
    vector<double> centers[2];
    vector<Layer> layers[2];                     // [block][step]
    vector<double> embedding, r1T, r1b, r2w;
    double r2b = 0;
    // filter tables: per block, per interval, 4 coefficients of all C = K * H channels
    vector<double> table[2];
    int nIntervals[2] = {0, 0};
    double spacing[2] = {0, 0};
    bool tables = false;
    vector<int> types, molecules;
    VerletList list;                             // tag 0: same molecule, 1: different molecules
    vector<int> order, rowOf;                    // the listed pairs by distance at the build; each one's row
    Pairs pairs[2];
    // work arrays (n x H): features, per step and block the convolution inputs x and the out1 pre-activations z
    vector<double> h, hNext, agg, tmp, g, gNext, gAgg, gx, wBuf, sBuf;
    vector<vector<double> > xs, sig;             // sig: the logistic of each out1 pre-activation (ssp's slope)
};

ForceImpl* CGSchNetForce::createImpl() const { return new CGSchNetForceImpl(*this); }

long long CGSchNetForce::getNumListBuilds(Context& context) {
    return dynamic_cast<CGSchNetForceImpl&>(getImplInContext(context)).numBuilds();
}

void CGSchNetForce::updateParametersInContext(Context& context) {
    dynamic_cast<CGSchNetForceImpl&>(getImplInContext(context)).updateParametersInContext(getContextImpl(context));
}

void CGSchNetForceImpl::setParameters() {
    if (owner.getHidden() != H || owner.getNumRbf() != R || owner.getNumInteractions() != K)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the architecture cannot change");
    for (auto& s : owner.getParameterSizes())
        if (!owner.hasParameter(s.first))
            throw OpenMMException("CGSchNetForce: the parameter '" + s.first + "' was not set");
    embedding = owner.getParameter("embedding");
    for (int b = 0; b < 2; b++) {
        centers[b] = owner.getParameter(string(BLOCKS[b]) + ".centers");
        gamma[b] = owner.getParameter(string(BLOCKS[b]) + ".gamma")[0];
        layers[b].assign(K, Layer());
        for (int k = 0; k < K; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            Layer& L = layers[b][k];
            L.f1W = owner.getParameter(p + "filter1.weight");
            L.f1b = owner.getParameter(p + "filter1.bias");
            L.f2W = owner.getParameter(p + "filter2.weight");
            L.f2b = owner.getParameter(p + "filter2.bias");
            L.in2fW = owner.getParameter(p + "in2f.weight");
            L.in2fT = transposed(L.in2fW, H, H);
            L.o1W = owner.getParameter(p + "out1.weight");
            L.o1T = transposed(L.o1W, H, H);
            L.o1b = owner.getParameter(p + "out1.bias");
            L.o2W = owner.getParameter(p + "out2.weight");
            L.o2T = transposed(L.o2W, H, H);
            L.o2b = owner.getParameter(p + "out2.bias");
        }
    }
    r1T = transposed(owner.getParameter("readout1.weight"), half, H);
    r1b = owner.getParameter("readout1.bias");
    r2w = owner.getParameter("readout2.weight");
    r2b = owner.getParameter("readout2.bias")[0];
    tables = owner.getTableSpacing() > 0;
    for (int b = 0; b < 2 && tables; b++) {
        // as CGSchNet.tabulate_filters: the cutoff is a grid point, where value and slope are set to 0
        int m = max(2, (int) ceil(cut[b] / owner.getTableSpacing() - 1e-9));
        double hs = cut[b] / m;
        vector<double> v((size_t) (m + 1) * C), s((size_t) (m + 1) * C);
        for (int q = 0; q <= m; q++)
            filter(b, q * hs, &v[(size_t) q * C], &s[(size_t) q * C]);
        for (int c = 0; c < C; c++)
            v[(size_t) m * C + c] = s[(size_t) m * C + c] = 0.0;
        table[b].assign((size_t) m * 4 * C, 0.0);
        for (int q = 0; q < m; q++)
            for (int c = 0; c < C; c++) {
                double y0 = v[(size_t) q * C + c], y1 = v[(size_t) (q + 1) * C + c];
                double m0 = s[(size_t) q * C + c] * hs, m1 = s[(size_t) (q + 1) * C + c] * hs;
                double* t = &table[b][(size_t) q * 4 * C];
                t[c] = y0;
                t[C + c] = m0;
                t[2 * C + c] = 3.0 * (y1 - y0) - 2.0 * m0 - m1;
                t[3 * C + c] = 2.0 * (y0 - y1) + m0 + m1;
            }
        nIntervals[b] = m;
        spacing[b] = hs;
    }
}

void CGSchNetForceImpl::filter(int b, double r, double* value, double* slope) const {
    vector<double> rbf(R), drbf(R), z(H), dz(H), a(H), da(H);
    for (int m = 0; m < R; m++) {
        double e = r - centers[b][m];
        rbf[m] = exp(-gamma[b] * e * e);
        drbf[m] = -2.0 * gamma[b] * e * rbf[m];
    }
    const double arg = r * (M_PI / cut[b]);
    const double fcut = 0.5 * (cos(arg) + 1.0), dfcut = -0.5 * (M_PI / cut[b]) * sin(arg);
    for (int k = 0; k < K; k++) {
        const Layer& L = layers[b][k];
        for (int f = 0; f < H; f++) {
            double s = L.f1b[f], ds = 0.0;
            for (int m = 0; m < R; m++) {
                s += L.f1W[f * R + m] * rbf[m];
                ds += L.f1W[f * R + m] * drbf[m];
            }
            double slope;
            a[f] = ssp(s, slope);
            da[f] = slope * ds;
        }
        for (int f = 0; f < H; f++) {
            double w = L.f2b[f], dw = 0.0;
            for (int m = 0; m < H; m++) {
                w += L.f2W[f * H + m] * a[m];
                dw += L.f2W[f * H + m] * da[m];
            }
            value[k * H + f] = w * fcut;
            slope[k * H + f] = dw * fcut + w * dfcut;
        }
    }
}

void CGSchNetForceImpl::initialize(ContextImpl& context) {
    CustomCPPForceImpl::initialize(context);
    n = context.getSystem().getNumParticles();
    if (owner.getNumParticles() != n) {
        stringstream msg;
        msg << "CGSchNetForce must have exactly as many particles as the System it belongs to (" << n << "), has "
            << owner.getNumParticles();
        throw OpenMMException(msg.str());
    }
    H = owner.getHidden();
    R = owner.getNumRbf();
    K = owner.getNumInteractions();
    if (H < 2)
        throw OpenMMException("CGSchNetForce: setArchitecture() was not called");
    C = K * H;
    half = H / 2;
    cut[0] = owner.getIntraCutoff();
    cut[1] = owner.getInterCutoff();
    types.resize(n);
    molecules.resize(n);
    for (int i = 0; i < n; i++) {
        owner.getParticleParameters(i, types[i], molecules[i]);
        if (types[i] >= owner.getNumTypes())
            throw OpenMMException("CGSchNetForce: a particle's type is >= the number of types");
    }
    setParameters();
    list.setup(n, max(cut[0], cut[1]), owner.getNeighborSkin(), owner.usesPeriodicBoundaryConditions(), 1,
               "CGSchNetForce");
    for (auto* v : {&h, &hNext, &agg, &tmp, &g, &gNext, &gAgg, &gx})
        v->assign((size_t) n * H, 0.0);
    xs.assign(2 * K, vector<double>((size_t) n * H));
    sig.assign(2 * K, vector<double>((size_t) n * H));
    wBuf.assign(H, 0.0);
    sBuf.assign(H, 0.0);
}

void CGSchNetForceImpl::updateParametersInContext(ContextImpl& context) {
    if (owner.getNumParticles() != n)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the number of particles changed");
    setParameters();
    context.systemChanged();
}

void CGSchNetForceImpl::gatherPairs() {
    for (auto& p : pairs) {
        p.i.clear(), p.j.clear(), p.r.clear(), p.ux.clear(), p.uy.clear(), p.uz.clear();
    }
    const double c2[2] = {cut[0] * cut[0], cut[1] * cut[1]};
    for (int k : order) {
        const int i = rowOf[k], b = list.tag[k];
        const Vec3 d = list.separation(i, k);
        const double r2 = d.dot(d);
        if (r2 >= c2[b] || r2 == 0.0)
            continue;
        const double r = sqrt(r2), inv = 1.0 / r;
        Pairs& p = pairs[b];
        p.i.push_back(i);
        p.j.push_back(list.partner[k]);
        p.r.push_back(r);
        p.ux.push_back(d[0] * inv);
        p.uy.push_back(d[1] * inv);
        p.uz.push_back(d[2] * inv);
    }
    for (int b = 0; b < 2; b++) {
        Pairs& p = pairs[b];
        const size_t np = p.i.size();
        p.dEdr.assign(np, 0.0);
        if (!tables) {
            p.w.resize(np * C);
            p.s.resize(np * C);
            for (size_t q = 0; q < np; q++)
                filter(b, p.r[q], &p.w[q * C], &p.s[q * C]);
            continue;
        }
        p.interval.resize(np);
        p.t.resize(np);
        const double inv = 1.0 / spacing[b];
        for (size_t q = 0; q < np; q++) {
            const double x = p.r[q] * inv;
            p.interval[q] = min((int) x, nIntervals[b] - 1);
            p.t[q] = x - p.interval[q];
        }
    }
}

double CGSchNetForceImpl::computeForce(ContextImpl& context, const vector<Vec3>& pos, vector<Vec3>& forces) {
    Vec3 box[3];
    context.getPeriodicBoxVectors(box[0], box[1], box[2]);
    if (list.update(pos, box, [&] (int i, int j) { return molecules[i] == molecules[j] ? 0 : 1; })) {
        // visit the listed pairs by distance: neighbouring pairs then read neighbouring rows of the filter
        // tables (in cache) instead of random ones
        const int m = (int) list.partner.size();
        rowOf.resize(m);
        order.resize(m);
        vector<double> r2(m);
        for (int i = 0; i < n; i++)
            for (int k = list.start[i]; k < list.start[i + 1]; k++) {
                rowOf[k] = i;
                order[k] = k;
                const Vec3 d = list.separation(i, k);
                r2[k] = d.dot(d);
            }
        sort(order.begin(), order.end(), [&] (int a, int b) { return r2[a] < r2[b]; });
    }
    gatherPairs();
    switch (H) {   // the common widths as compile-time constants
        case 16: return evaluate<16>(forces);
        case 32: return evaluate<32>(forces);
        case 64: return evaluate<64>(forces);
        case 128: return evaluate<128>(forces);
        default: return evaluate<0>(forces);
    }
}

template <int HH>
double CGSchNetForceImpl::evaluate(vector<Vec3>& forces) {
    const int H = HH > 0 ? HH : this->H;
    const size_t nh = (size_t) n * H;
    for (int i = 0; i < n; i++)
        copy(&embedding[(size_t) types[i] * H], &embedding[(size_t) (types[i] + 1) * H], &h[(size_t) i * H]);
    // forward
    for (int k = 0; k < K; k++) {
        copy(h.begin(), h.end(), hNext.begin());
        for (int b = 0; b < 2; b++) {
            const Layer& L = layers[b][k];
            const Pairs& p = pairs[b];
            double* x = xs[2 * k + b].data();
            linearRows<HH>(h.data(), n, H, L.in2fT.data(), NULL, H, x);
            fill(agg.begin(), agg.end(), 0.0);
            double* w = wBuf.data();
            for (size_t q = 0; q < p.i.size(); q++) {
                filterAt<HH>(b, p, q, k, w, NULL);
                double* ai = &agg[(size_t) p.i[q] * H];
                double* aj = &agg[(size_t) p.j[q] * H];
                const double* xi = x + (size_t) p.i[q] * H;
                const double* xj = x + (size_t) p.j[q] * H;
                for (int f = 0; f < H; f++) {
                    ai[f] += w[f] * xj[f];
                    aj[f] += w[f] * xi[f];
                }
            }
            double* z = sig[2 * k + b].data();
            linearRows<HH>(agg.data(), n, H, L.o1T.data(), L.o1b.data(), H, z);
            for (size_t e = 0; e < nh; e++)
                tmp[e] = ssp(z[e], z[e]);   // z becomes the slope
            linearRows<HH>(tmp.data(), n, H, L.o2T.data(), L.o2b.data(), H, agg.data());
            for (size_t e = 0; e < nh; e++)
                hNext[e] += agg[e];
        }
        swap(h, hNext);
    }
    // readout and its gradient dE/dh
    double energy = n * r2b;
    vector<double> zr(half), gr(half);
    for (int i = 0; i < n; i++) {
        linearRows<0>(&h[(size_t) i * H], 1, H, r1T.data(), r1b.data(), half, zr.data());
        for (int m = 0; m < half; m++) {
            double slope;
            energy += r2w[m] * ssp(zr[m], slope);
            gr[m] = r2w[m] * slope;
        }
        // g_i = readout1.weight^T gr: readout1.weight is r1T transposed
        double* gi = &g[(size_t) i * H];
        for (int f = 0; f < H; f++) {
            double s = 0.0;
            for (int m = 0; m < half; m++)
                s += r1T[(size_t) f * half + m] * gr[m];
            gi[f] = s;
        }
    }
    // backward through the interaction steps
    for (int k = K - 1; k >= 0; k--) {
        copy(g.begin(), g.end(), gNext.begin());
        for (int b = 0; b < 2; b++) {
            const Layer& L = layers[b][k];
            Pairs& p = pairs[b];
            const double* x = xs[2 * k + b].data();
            const double* z = sig[2 * k + b].data();
            linearBackRows<HH>(g.data(), n, H, L.o2W.data(), H, tmp.data(), false);
            for (size_t e = 0; e < nh; e++)
                tmp[e] *= z[e];
            linearBackRows<HH>(tmp.data(), n, H, L.o1W.data(), H, gAgg.data(), false);
            fill(gx.begin(), gx.end(), 0.0);
            double *w = wBuf.data(), *s = sBuf.data();
            for (size_t q = 0; q < p.i.size(); q++) {
                filterAt<HH>(b, p, q, k, w, s);
                const size_t i = (size_t) p.i[q] * H, j = (size_t) p.j[q] * H;
                const double *gi = &gAgg[i], *gj = &gAgg[j], *xi = x + i, *xj = x + j;
                double *gxi = &gx[i], *gxj = &gx[j];
                double d = 0.0;
#pragma omp simd reduction(+:d)
                for (int f = 0; f < H; f++) {
                    gxj[f] += w[f] * gi[f];
                    gxi[f] += w[f] * gj[f];
                    d += s[f] * (gi[f] * xj[f] + gj[f] * xi[f]);
                }
                p.dEdr[q] += d;
            }
            linearBackRows<HH>(gx.data(), n, H, L.in2fW.data(), H, gNext.data(), true);
        }
        swap(g, gNext);
    }
    std::fill(forces.begin(), forces.end(), Vec3());   // the caller's array is reused: store, do not add
    for (int b = 0; b < 2; b++) {
        const Pairs& p = pairs[b];
        for (size_t q = 0; q < p.i.size(); q++) {
            const Vec3 f(p.dEdr[q] * p.ux[q], p.dEdr[q] * p.uy[q], p.dEdr[q] * p.uz[q]);   // u points from i to j
            forces[p.i[q]] += f;
            forces[p.j[q]] -= f;
        }
    }
    return energy;
}

/* ------------------------------------------------------------------------------------------------------------ */

static string joinValues(const vector<double>& v) {
    stringstream s;
    s.precision(17);
    for (size_t k = 0; k < v.size(); k++)
        s << (k ? " " : "") << v[k];
    return s.str();
}

static vector<double> splitValues(const string& text) {
    vector<double> v;
    stringstream s(text);
    string item;
    while (s >> item)
        v.push_back(stod(item));
    return v;
}

class CGSchNetForceProxy : public SerializationProxy {
public:
    CGSchNetForceProxy() : SerializationProxy("CGSchNetForce") {}
    void serialize(const void* object, SerializationNode& node) const {
        node.setIntProperty("version", 1);
        const CGSchNetForce& force = *reinterpret_cast<const CGSchNetForce*>(object);
        node.setIntProperty("forceGroup", force.getForceGroup());
        node.setStringProperty("name", force.getName());
        node.setIntProperty("numTypes", force.getNumTypes());
        node.setIntProperty("hidden", force.getHidden());
        node.setIntProperty("numRbf", force.getNumRbf());
        node.setIntProperty("numInteractions", force.getNumInteractions());
        node.setDoubleProperty("intraCutoff", force.getIntraCutoff());
        node.setDoubleProperty("interCutoff", force.getInterCutoff());
        node.setDoubleProperty("tableSpacing", force.getTableSpacing());
        node.setDoubleProperty("skin", force.getNeighborSkin());
        node.setIntProperty("periodic", force.usesPeriodicBoundaryConditions() ? 1 : 0);
        SerializationNode& particles = node.createChildNode("Particles");
        for (int i = 0; i < force.getNumParticles(); i++) {
            int t, m;
            force.getParticleParameters(i, t, m);
            particles.createChildNode("Particle").setIntProperty("t", t).setIntProperty("m", m);
        }
        SerializationNode& params = node.createChildNode("Parameters");
        for (auto& s : force.getParameterSizes())
            if (force.hasParameter(s.first))
                params.createChildNode("P").setStringProperty("name", s.first)
                      .setStringProperty("v", joinValues(force.getParameter(s.first)));
    }
    void* deserialize(const SerializationNode& node) const {
        int version = node.getIntProperty("version");
        if (version != 1)
            throw OpenMMException("CGSchNetForce: unsupported version " + to_string(version));
        CGSchNetForce* force = new CGSchNetForce();
        try {
            force->setForceGroup(node.getIntProperty("forceGroup", 0));
            force->setName(node.getStringProperty("name", force->getName()));
            force->setArchitecture(node.getIntProperty("numTypes"), node.getIntProperty("hidden"),
                                   node.getIntProperty("numRbf"), node.getIntProperty("numInteractions"),
                                   node.getDoubleProperty("intraCutoff"), node.getDoubleProperty("interCutoff"));
            force->setTableSpacing(node.getDoubleProperty("tableSpacing"));
            force->setNeighborSkin(node.getDoubleProperty("skin", 0.1));
            force->setUsesPeriodicBoundaryConditions(node.getIntProperty("periodic") != 0);
            for (auto& p : node.getChildNode("Particles").getChildren())
                force->addParticle(p.getIntProperty("t"), p.getIntProperty("m"));
            for (auto& p : node.getChildNode("Parameters").getChildren())
                force->setParameter(p.getStringProperty("name"), splitValues(p.getStringProperty("v")));
        }
        catch (...) {
            delete force;
            throw;
        }
        return force;
    }
};

} // namespace OpenMMCGML

using namespace OpenMMCGML;

void cgmlSetLastError(const string& message);   // CGPairTableForce.cpp

extern "C" {

__attribute__((constructor)) void cgml_register_schnet_proxy() {
    SerializationProxy::registerProxy(typeid(CGSchNetForce), new CGSchNetForceProxy());
}

static CGSchNetForce* asSchNetForce(void* force) {
    CGSchNetForce* f = dynamic_cast<CGSchNetForce*>(reinterpret_cast<Force*>(force));
    if (f == NULL)
        throw OpenMMException("this force is not a CGSchNetForce");
    return f;
}

int cgml_schnet_force_is(void* force) {
    return dynamic_cast<CGSchNetForce*>(reinterpret_cast<Force*>(force)) != NULL ? 1 : 0;
}

int cgml_schnet_force_set_parameter(void* force, const char* name, const double* values, int count) {
    try {
        asSchNetForce(force)->setParameter(name, vector<double>(values, values + count));
        return 0;
    }
    catch (exception& e) {
        cgmlSetLastError(e.what());
        return -1;
    }
}

int cgml_schnet_force_update_in_context(void* force, void* context) {
    try {
        asSchNetForce(force)->updateParametersInContext(*reinterpret_cast<Context*>(context));
        return 0;
    }
    catch (exception& e) {
        cgmlSetLastError(e.what());
        return -1;
    }
}

long long cgml_schnet_force_num_list_builds(void* force, void* context) {
    try {
        return asSchNetForce(force)->getNumListBuilds(*reinterpret_cast<Context*>(context));
    }
    catch (exception& e) {
        cgmlSetLastError(e.what());
        return -1;
    }
}

}
