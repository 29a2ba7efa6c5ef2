/*
 * openmm_cgml: the compiled SchNet-style CG network (see CGSchNetForce.h), its implementation, its serialization
 * proxy and its C interface for ctypes.
 */
#include "CGSchNetForce.h"
#include "CGPluginCommon.h"
#include "CGVerletList.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/CustomCPPForceImpl.h"
#include "openmm/internal/ThreadPool.h"
#include "openmm/serialization/SerializationNode.h"
#include "openmm/serialization/SerializationProxy.h"
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>

using namespace OpenMM;
using namespace std;

// An AVX2 + FMA build of the evaluation beside the portable one, where GCC compiles for x86-64 (clang and other CPUs:
// the portable one only).  Which runs is decided per Context from the CPU (CGML_SIMD=generic forces the portable).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CGML_X86_AVX2 1
#else
#define CGML_X86_AVX2 0
#endif

namespace OpenMMCGML {

static const char* BLOCKS[2] = {"intra", "inter"};
static const char* LAYERS[9] = {"filter1.weight", "filter1.bias", "filter2.weight", "filter2.bias", "in2f.weight",
                                "out1.weight", "out1.bias", "out2.weight", "out2.bias"};

CGSchNetForce::CGSchNetForce() : numTypes(0), hidden(0), numRbf(0), numInteractions(0), intraCutoff(0),
    interCutoff(0), tableSpacing(0.001), skin(0.1), periodic(true), doublePrecision(false) {}

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
static const int MIN_BEADS_PER_THREAD = 768;
enum { SIMD_GENERIC = 0, SIMD_AVX2 = 1 };

/* The instruction set of the network's evaluation: CGML_SIMD unset or "auto" takes AVX2 + FMA where the CPU and the
 * build have them, "generic" the portable code, "avx2" insists (an error where it cannot run). */
/* Whether this build has the AVX2 + FMA evaluation and this CPU can run it. */
static bool avx2Runs() {
#if CGML_X86_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static int chooseSimd() {
    const char* env = getenv("CGML_SIMD");
    const string want = env == NULL ? "auto" : string(env);
    if (want != "auto" && want != "generic" && want != "avx2")
        throw OpenMMException("CGML_SIMD='" + want + "': expected auto, generic or avx2");
    const bool avx2 = avx2Runs();
    if (want == "avx2" && !avx2)
        throw OpenMMException("CGML_SIMD=avx2, but this CPU or this build has no AVX2 + FMA path");
    return want != "generic" && avx2 ? SIMD_AVX2 : SIMD_GENERIC;
}

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

static vector<double> transposed(const vector<double>& w, int nOut, int nIn) {
    vector<double> t(w.size());
    for (int m = 0; m < nOut; m++)
        for (int k = 0; k < nIn; k++)
            t[(size_t) k * nOut + m] = w[(size_t) m * nIn + k];
    return t;
}

template <typename Real>
static vector<Real> as(const vector<double>& v) { return vector<Real>(v.begin(), v.end()); }

/* The network's numbers in one working precision, and its work arrays. */
template <typename Real>
struct Net {
    struct Layer {
        vector<Real> in2fW, in2fT, o1W, o1T, o1b, o2W, o2T, o2b;
    };
    vector<Layer> layers[2];                    // [block][step]
    vector<Real> embedding, r1T, r1b, r2w, table[2];
    vector<Real> w[2], s[2];                    // exact filters only: per block, per pair, values and slopes (x C)
    // (n x H): features, their gradients, temporaries; per step and block the convolution inputs x and the
    // logistic of each out1 pre-activation (ssp's slope); per block the convolution sums and gradients
    vector<Real> h, hNext, tmp, vbuf, g, gNext, aggs[2], gAggs[2], gxs[2];
    vector<vector<Real> > xs, sig, wBuf, sBuf;  // wBuf, sBuf: per thread, one pair's filter values and slopes
    vector<vector<vector<Real> > > scatter;     // [thread][block]: pair sums of threads 1.. (thread 0: aggs, gxs)

    void allocate(int n, int H, int K, int threads) {
        const size_t nh = (size_t) n * H;
        for (auto* v : {&h, &hNext, &tmp, &vbuf, &g, &gNext, &aggs[0], &aggs[1], &gAggs[0], &gAggs[1], &gxs[0],
                        &gxs[1]})
            v->assign(nh, 0);
        xs.assign(2 * K, vector<Real>(nh));
        sig.assign(2 * K, vector<Real>(nh));
        wBuf.assign(threads, vector<Real>(H));
        sBuf.assign(threads, vector<Real>(H));
        scatter.assign(threads, vector<vector<Real> >(2, vector<Real>(nh)));
        scatter[0].clear();
    }
};

class CGSchNetForceImpl : public CustomCPPForceImpl {
public:
    CGSchNetForceImpl(const CGSchNetForce& owner) : CustomCPPForceImpl(owner), owner(owner) {}
    const CGSchNetForce& getOwner() const { return owner; }
    void initialize(ContextImpl& context);
    double computeForce(ContextImpl& context, const vector<Vec3>& positions, vector<Vec3>& forces);
    void updateParametersInContext(ContextImpl& context);
    long long numBuilds() const { return list.numBuilds; }
private:
    struct Filter {           // the filter networks of one block of one step (double: they build the tables)
        vector<double> f1W, f1b, f2W, f2b;
    };
    struct Pairs {            // the pairs of one block within its cutoff
        vector<int> i, j, interval;   // interval: of the filter table
        vector<double> r, ux, uy, uz, t, dEdr;   // t: position in the interval (0..1)
    };
    void setParameters();
    template <typename Real>
    void setNet(Net<Real>& net, const vector<double>& tableValues0, const vector<double>& tableValues1);
    void filter(int block, double r, double* value, double* slope) const;
    void gatherPairs();
    template <typename Real>
    void exactFilters(Net<Real>& net);
    // the evaluation, compiled once per instruction set (CGSchNetEval.inc); simd picks one at initialize()
    template <typename Real, int HH>
    double evaluateGeneric(Net<Real>& net, vector<Vec3>& forces);
#if CGML_X86_AVX2
    template <typename Real, int HH>
    double evaluateAvx2(Net<Real>& net, vector<Vec3>& forces);
#endif
    template <typename Real, int HH>
    double evaluate(Net<Real>& net, vector<Vec3>& forces) {
#if CGML_X86_AVX2
        if (simd == SIMD_AVX2)
            return evaluateAvx2<Real, HH>(net, forces);
#endif
        return evaluateGeneric<Real, HH>(net, forces);
    }
    template <class F>
    void parallel(F body) {   // body(thread, count) on every thread, then wait
        if (!pool) {
            body(0, 1);
            return;
        }
        const int count = pool->getNumThreads();
        pool->execute([&] (ThreadPool& p, int t) { body(t, count); });
        pool->waitForThreads();
    }
    const CGSchNetForce& owner;
    int n = 0, H = 0, R = 0, K = 0, C = 0, half = 0;
    double cut[2] = {0, 0}, gamma[2] = {0, 0}, r2b = 0;
    vector<double> centers[2];
    vector<Filter> filters[2];                   // [block][step]
    int nIntervals[2] = {0, 0};
    double spacing[2] = {0, 0};
    bool tables = false, single = true;
    int simd = SIMD_GENERIC;
    vector<int> types, molecules;
    VerletList list;                             // tag 0: same molecule, 1: different molecules
    // beads in the order of their cells at the last list build (perm: position -> bead; slot: bead -> position),
    // so that a bead's neighbours lie near it in the work arrays at every system size
    vector<int> perm, slot;
    // the listed pairs (list indices, and each one's row) as the evaluation visits them: by blocks of 256 beads,
    // within a block by distance at the build (neighbouring pairs then read neighbouring rows of the filter tables)
    vector<int> order, rowOf;
    void sortBeads();
    void orderPairs();
    Pairs pairs[2];
    Net<float> netSingle;
    Net<double> netDouble;
    vector<double> threadEnergy;
    unique_ptr<ThreadPool> pool;                 // the CPU platform's threads ("Threads")
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
    for (int b = 0; b < 2; b++) {
        centers[b] = owner.getParameter(string(BLOCKS[b]) + ".centers");
        gamma[b] = owner.getParameter(string(BLOCKS[b]) + ".gamma")[0];
        filters[b].assign(K, Filter());
        for (int k = 0; k < K; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            Filter& F = filters[b][k];
            F.f1W = owner.getParameter(p + "filter1.weight");
            F.f1b = owner.getParameter(p + "filter1.bias");
            F.f2W = owner.getParameter(p + "filter2.weight");
            F.f2b = owner.getParameter(p + "filter2.bias");
        }
    }
    r2b = owner.getParameter("readout2.bias")[0];
    tables = owner.getTableSpacing() > 0;
    vector<double> coefficients[2];
    for (int b = 0; b < 2 && tables; b++) {
        // as CGSchNet.tabulate_filters: the cutoff is a grid point, where value and slope are set to 0
        int m = max(2, (int) ceil(cut[b] / owner.getTableSpacing() - 1e-9));
        double hs = cut[b] / m;
        vector<double> v((size_t) (m + 1) * C), s((size_t) (m + 1) * C);
        for (int q = 0; q <= m; q++)
            filter(b, q * hs, &v[(size_t) q * C], &s[(size_t) q * C]);
        for (int c = 0; c < C; c++)
            v[(size_t) m * C + c] = s[(size_t) m * C + c] = 0.0;
        coefficients[b].assign((size_t) m * 4 * C, 0.0);
        for (int q = 0; q < m; q++)
            for (int c = 0; c < C; c++) {
                double y0 = v[(size_t) q * C + c], y1 = v[(size_t) (q + 1) * C + c];
                double m0 = s[(size_t) q * C + c] * hs, m1 = s[(size_t) (q + 1) * C + c] * hs;
                double* t = &coefficients[b][(size_t) q * 4 * C];
                t[c] = y0;
                t[C + c] = m0;
                t[2 * C + c] = 3.0 * (y1 - y0) - 2.0 * m0 - m1;
                t[3 * C + c] = 2.0 * (y0 - y1) + m0 + m1;
            }
        nIntervals[b] = m;
        spacing[b] = hs;
    }
    if (single)
        setNet(netSingle, coefficients[0], coefficients[1]);
    else
        setNet(netDouble, coefficients[0], coefficients[1]);
}

template <typename Real>
void CGSchNetForceImpl::setNet(Net<Real>& net, const vector<double>& table0, const vector<double>& table1) {
    net.embedding = as<Real>(owner.getParameter("embedding"));
    for (int b = 0; b < 2; b++) {
        net.layers[b].assign(K, typename Net<Real>::Layer());
        for (int k = 0; k < K; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            auto& L = net.layers[b][k];
            const vector<double>& in2f = owner.getParameter(p + "in2f.weight");
            const vector<double>& o1 = owner.getParameter(p + "out1.weight");
            const vector<double>& o2 = owner.getParameter(p + "out2.weight");
            L.in2fW = as<Real>(in2f);
            L.in2fT = as<Real>(transposed(in2f, H, H));
            L.o1W = as<Real>(o1);
            L.o1T = as<Real>(transposed(o1, H, H));
            L.o1b = as<Real>(owner.getParameter(p + "out1.bias"));
            L.o2W = as<Real>(o2);
            L.o2T = as<Real>(transposed(o2, H, H));
            L.o2b = as<Real>(owner.getParameter(p + "out2.bias"));
        }
    }
    net.r1T = as<Real>(transposed(owner.getParameter("readout1.weight"), half, H));
    net.r1b = as<Real>(owner.getParameter("readout1.bias"));
    net.r2w = as<Real>(owner.getParameter("readout2.weight"));
    net.table[0] = as<Real>(table0);
    net.table[1] = as<Real>(table1);
}

void CGSchNetForceImpl::filter(int b, double r, double* value, double* slope) const {
    vector<double> rbf(R), drbf(R), a(H), da(H);
    for (int m = 0; m < R; m++) {
        double e = r - centers[b][m];
        rbf[m] = exp(-gamma[b] * e * e);
        drbf[m] = -2.0 * gamma[b] * e * rbf[m];
    }
    const double arg = r * (M_PI / cut[b]);
    const double fcut = 0.5 * (cos(arg) + 1.0), dfcut = -0.5 * (M_PI / cut[b]) * sin(arg);
    for (int k = 0; k < K; k++) {
        const Filter& F = filters[b][k];
        for (int f = 0; f < H; f++) {
            double s = F.f1b[f], ds = 0.0;
            for (int m = 0; m < R; m++) {
                s += F.f1W[f * R + m] * rbf[m];
                ds += F.f1W[f * R + m] * drbf[m];
            }
            double slope;
            a[f] = ssp(s, slope);
            da[f] = slope * ds;
        }
        for (int f = 0; f < H; f++) {
            double w = F.f2b[f], dw = 0.0;
            for (int m = 0; m < H; m++) {
                w += F.f2W[f * H + m] * a[m];
                dw += F.f2W[f * H + m] * da[m];
            }
            value[k * H + f] = w * fcut;
            slope[k * H + f] = dw * fcut + w * dfcut;
        }
    }
}

void CGSchNetForceImpl::initialize(ContextImpl& context) {
    CustomCPPForceImpl::initialize(context);
    n = context.getSystem().getNumParticles();
    checkParticleCount("CGSchNetForce", n, owner.getNumParticles());
    H = owner.getHidden();
    R = owner.getNumRbf();
    K = owner.getNumInteractions();
    if (H < 2)
        throw OpenMMException("CGSchNetForce: setArchitecture() was not called");
    C = K * H;
    half = H / 2;
    cut[0] = owner.getIntraCutoff();
    cut[1] = owner.getInterCutoff();
    single = !owner.getUsesDoublePrecision();
    simd = chooseSimd();
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
    // the CPU platform's threads, one per MIN_BEADS_PER_THREAD beads at most: below that a thread costs more in
    // synchronisation (13 parallel regions per evaluation) than it saves
    const int threads = min(platformThreads(context), max(1, n / MIN_BEADS_PER_THREAD));
    if (threads > 1)
        pool.reset(new ThreadPool(threads));
    if (single)
        netSingle.allocate(n, H, K, threads);
    else
        netDouble.allocate(n, H, K, threads);
    threadEnergy.assign(threads, 0.0);
}

void CGSchNetForceImpl::updateParametersInContext(ContextImpl& context) {
    if (owner.getNumParticles() != n)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the number of particles changed");
    if (owner.getUsesDoublePrecision() == single)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the precision cannot change");
    setParameters();
    context.systemChanged();
}

void CGSchNetForceImpl::gatherPairs() {
    for (auto& p : pairs)   // sized for every listed pair, trimmed to those within the cutoffs below
        for (auto* v : {&p.r, &p.ux, &p.uy, &p.uz})
            v->resize(order.size());
    for (auto& p : pairs)
        for (auto* v : {&p.i, &p.j})
            v->resize(order.size());
    const double c2[2] = {cut[0] * cut[0], cut[1] * cut[1]};
    size_t np[2] = {0, 0};
    for (size_t o = 0; o < order.size(); o++) {
        const int k = order[o], i = rowOf[o], b = list.tag[k];
        const Vec3 d = list.separation(i, k);
        const double r2 = d.dot(d);
        if (r2 >= c2[b] || r2 == 0.0)
            continue;
        const double r = sqrt(r2), inv = 1.0 / r;
        Pairs& p = pairs[b];
        const size_t q = np[b]++;
        p.i[q] = slot[i];
        p.j[q] = slot[list.partner[k]];
        p.r[q] = r;
        p.ux[q] = d[0] * inv;
        p.uy[q] = d[1] * inv;
        p.uz[q] = d[2] * inv;
    }
    for (int b = 0; b < 2; b++) {
        Pairs& p = pairs[b];
        for (auto* v : {&p.r, &p.ux, &p.uy, &p.uz})
            v->resize(np[b]);
        for (auto* v : {&p.i, &p.j})
            v->resize(np[b]);
        p.dEdr.assign(np[b], 0.0);
        if (!tables)
            continue;
        p.interval.resize(np[b]);
        p.t.resize(np[b]);
        const double inv = 1.0 / spacing[b];
        for (size_t q = 0; q < np[b]; q++) {
            const double x = p.r[q] * inv;
            p.interval[q] = min((int) x, nIntervals[b] - 1);
            p.t[q] = x - p.interval[q];
        }
    }
}

void CGSchNetForceImpl::sortBeads() {
    // cells of about half the cutoff over the wrapped positions (the list's frame), beads by cell (counting sort)
    perm.resize(n);
    slot.resize(n);
    double lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 3; d++) {
            lo[d] = i == 0 ? list.local[i][d] : min(lo[d], list.local[i][d]);
            hi[d] = i == 0 ? list.local[i][d] : max(hi[d], list.local[i][d]);
        }
    // half the cutoff, or larger where the beads are sparse (an open system), so there are about n cells at most
    double volume = 1.0, size = 0.5 * max(cut[0], cut[1]);
    for (int d = 0; d < 3; d++)
        volume *= max(hi[d] - lo[d], size);
    size = max(size, cbrt(volume / n));
    int nc[3];
    for (int d = 0; d < 3; d++)
        nc[d] = max(1, (int) ((hi[d] - lo[d]) / size) + 1);
    vector<int> cellOf(n), count((size_t) nc[0] * nc[1] * nc[2] + 1, 0);
    for (int i = 0; i < n; i++) {
        int c[3];
        for (int d = 0; d < 3; d++)
            c[d] = min(nc[d] - 1, max(0, (int) ((list.local[i][d] - lo[d]) / size)));
        cellOf[i] = (c[0] * nc[1] + c[1]) * nc[2] + c[2];
        count[cellOf[i] + 1]++;
    }
    for (size_t c = 1; c < count.size(); c++)
        count[c] += count[c - 1];
    for (int i = 0; i < n; i++) {
        perm[count[cellOf[i]]++] = i;
    }
    for (int a = 0; a < n; a++)
        slot[perm[a]] = a;
}

void CGSchNetForceImpl::orderPairs() {
    const int block = 256;
    const double width = 0.01;   // nm: distance bins of the counting sort
    const int bins = (int) (max(cut[0], cut[1]) / width) + 2;
    order.clear();
    rowOf.clear();
    vector<int> ks, is, bin, start(bins + 1);
    for (int a0 = 0; a0 < n; a0 += block) {
        ks.clear(), is.clear(), bin.clear();
        for (int a = a0; a < min(n, a0 + block); a++) {
            const int i = perm[a];
            for (int k = list.start[i]; k < list.start[i + 1]; k++) {
                const Vec3 d = list.separation(i, k);
                ks.push_back(k);
                is.push_back(i);
                bin.push_back(min(bins - 1, (int) (sqrt(d.dot(d)) / width)));
            }
        }
        fill(start.begin(), start.end(), 0);
        for (int b : bin)
            start[b + 1]++;
        for (int b = 0; b < bins; b++)
            start[b + 1] += start[b];
        const size_t base = order.size();
        order.resize(base + ks.size());
        rowOf.resize(base + ks.size());
        for (size_t q = 0; q < ks.size(); q++) {
            const size_t o = base + start[bin[q]]++;
            order[o] = ks[q];
            rowOf[o] = is[q];
        }
    }
}

template <typename Real>
void CGSchNetForceImpl::exactFilters(Net<Real>& net) {
    vector<double> w(C), s(C);
    for (int b = 0; b < 2; b++) {
        const Pairs& p = pairs[b];
        net.w[b].resize(p.i.size() * C);
        net.s[b].resize(p.i.size() * C);
        for (size_t q = 0; q < p.i.size(); q++) {
            filter(b, p.r[q], w.data(), s.data());
            copy(w.begin(), w.end(), &net.w[b][q * C]);
            copy(s.begin(), s.end(), &net.s[b][q * C]);
        }
    }
}

double CGSchNetForceImpl::computeForce(ContextImpl& context, const vector<Vec3>& pos, vector<Vec3>& forces) {
    Vec3 box[3];
    context.getPeriodicBoxVectors(box[0], box[1], box[2]);
    if (list.update(pos, box, [&] (int i, int j) { return molecules[i] == molecules[j] ? 0 : 1; }))
    {
        sortBeads();
        orderPairs();
    }
    gatherPairs();
    if (single) {
        if (!tables)
            exactFilters(netSingle);
        switch (H) {   // the common widths as compile-time constants
            case 16: return evaluate<float, 16>(netSingle, forces);
            case 32: return evaluate<float, 32>(netSingle, forces);
            case 64: return evaluate<float, 64>(netSingle, forces);
            default: return evaluate<float, 0>(netSingle, forces);
        }
    }
    if (!tables)
        exactFilters(netDouble);
    switch (H) {
        case 16: return evaluate<double, 16>(netDouble, forces);
        case 32: return evaluate<double, 32>(netDouble, forces);
        case 64: return evaluate<double, 64>(netDouble, forces);
        default: return evaluate<double, 0>(netDouble, forces);
    }
}

#define CGML_ISA_NS isa_generic
#define CGML_EVAL_NAME evaluateGeneric
#include "CGSchNetEval.inc"
#undef CGML_ISA_NS
#undef CGML_EVAL_NAME

#if CGML_X86_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define CGML_ISA_NS isa_avx2
#define CGML_EVAL_NAME evaluateAvx2
#include "CGSchNetEval.inc"
#undef CGML_ISA_NS
#undef CGML_EVAL_NAME
#pragma GCC pop_options
#endif


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
        node.setIntProperty("double", force.getUsesDoublePrecision() ? 1 : 0);
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
            force->setUsesDoublePrecision(node.getIntProperty("double", 0) != 0);
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

/* The network's activation in float32 as the force evaluates it, for tests: value[q] = ssp(x[q]), slope[q] = its
 * derivative; avx2 != 0: the AVX2 build's (-1 where there is none). */
int cgml_schnet_ssp_float(const float* x, float* value, float* slope, int count, int avx2) {
    copy(x, x + count, slope);
    if (avx2) {
        if (!avx2Runs())
            return -1;
#if CGML_X86_AVX2
        isa_avx2::sspRows(slope, value, (size_t) count);
#endif
        return 0;
    }
    isa_generic::sspRows(slope, value, (size_t) count);
    return 0;
}

/* The instruction set a CGSchNetForce created now would use ("avx2" or "generic"), or NULL (CGML_SIMD invalid: the
 * reason in cgml_last_error). */
const char* cgml_schnet_simd() {
    return guarded([&] { return chooseSimd() == SIMD_AVX2 ? "avx2" : "generic"; }, (const char*) NULL);
}

int cgml_schnet_force_is(void* force) {
    return dynamic_cast<CGSchNetForce*>(reinterpret_cast<Force*>(force)) != NULL ? 1 : 0;
}

int cgml_schnet_force_set_parameter(void* force, const char* name, const double* values, int count) {
    return guarded([&] {
        asSchNetForce(force)->setParameter(name, vector<double>(values, values + count));
        return 0;
    }, -1);
}

int cgml_schnet_force_update_in_context(void* force, void* context) {
    return guarded([&] {
        asSchNetForce(force)->updateParametersInContext(*reinterpret_cast<Context*>(context));
        return 0;
    }, -1);
}

long long cgml_schnet_force_num_list_builds(void* force, void* context) {
    return guarded([&] { return asSchNetForce(force)->getNumListBuilds(*reinterpret_cast<Context*>(context)); },
                   -1LL);
}

}
